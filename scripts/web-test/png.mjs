// Small README screenshots: an RGBA picture as an 8-bit indexed PNG
// (PNG spec, colour type 3) on the 216-colour cube plus the style sheet's
// own colours (kept exact, so the header stays blue). Chromium's own PNGs of
// the admin pages are 60–180 KB; indexed ones are a fraction of that, with
// the text still sharp enough to read. Only Node's zlib is used.

import zlib from 'node:zlib';

const LEVELS = [0, 51, 102, 153, 204, 255];
// The colours of src/http/html.rs's CSS and Chromium's defaults for links
// and form controls.
const EXACT = [
  0x20324a, 0xb42318, 0x8a1a12, 0xfbdcdc, 0xdcf2e3, 0xfff1cc, 0xf5f6f8, 0xe8ecf0,
  0xd3d8de, 0x1d232a, 0x5b6670, 0x1a5fb4, 0x0000ee, 0x551a8b, 0xeef0f3, 0xefefef,
  0x767676, 0x888888, 0xcccccc, 0xe9e9ed,
];

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(body));
  return Buffer.concat([len, body, crc]);
}

// `rgba`: width*height*4 bytes, row by row (canvas ImageData order).
export function indexedPng(width, height, rgba) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 3; // indexed colour
  const palette = Buffer.alloc((216 + EXACT.length) * 3);
  const exact = new Map(EXACT.map((c, i) => [c, 216 + i]));
  EXACT.forEach((c, i) => palette.writeUIntBE(c, (216 + i) * 3, 3));
  for (let i = 0; i < 216; i++) {
    palette[i * 3] = LEVELS[Math.floor(i / 36)];
    palette[i * 3 + 1] = LEVELS[Math.floor(i / 6) % 6];
    palette[i * 3 + 2] = LEVELS[i % 6];
  }
  const q = (v) => Math.round(v / 51);
  const raw = Buffer.alloc(height * (width + 1));
  for (let y = 0; y < height; y++) {
    raw[y * (width + 1)] = 0; // filter: none
    for (let x = 0; x < width; x++) {
      const p = (y * width + x) * 4;
      const rgb = (rgba[p] << 16) | (rgba[p + 1] << 8) | rgba[p + 2];
      raw[y * (width + 1) + 1 + x] = exact.get(rgb) ?? q(rgba[p]) * 36 + q(rgba[p + 1]) * 6 + q(rgba[p + 2]);
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('PLTE', palette),
    chunk('IDAT', zlib.deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
