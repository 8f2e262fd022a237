/**
 * Writes moqt-vectors.json from vector-inputs.json: each entry gets the `hex` the
 * viewer's encoders produce (varint entries keep their hex, taken from the draft's
 * examples). The Rust test tests/tests/moqt_vectors.rs then checks every hex against the
 * moq-transport crate, so a wrong encoder here cannot go unnoticed.
 * Run: node viewer/test/make-vectors.mjs
 */

import { readFileSync, writeFileSync } from 'node:fs';
import { ByteWriter, toHex } from '../js/moqt/bytes.js';
import { encodeFetchHeaderVector, encodeMessageVector, encodeSubgroupVector } from './vector-codec.mjs';

const dir = new URL('.', import.meta.url);
const input = JSON.parse(readFileSync(new URL('vector-inputs.json', dir), 'utf8'));
for (const v of input.varints) v.hex ??= toHex(new ByteWriter().varint(BigInt(v.value)).finish());
for (const v of input.messages) v.hex = toHex(encodeMessageVector(v));
for (const v of input.subgroups) v.hex = toHex(encodeSubgroupVector(v));
for (const v of input.fetchHeaders) v.hex = toHex(encodeFetchHeaderVector(v));
writeFileSync(new URL('moqt-vectors.json', dir), JSON.stringify(input, null, 1) + '\n');
console.log('wrote moqt-vectors.json');
