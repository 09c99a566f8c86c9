import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSSE } from '../src/sse.js';

const cases = [
  { name: 'one message', in: 'id: 7\nevent: T\ndata: {"a":1}\n\n', messages: [{ id: '7', event: 'T', data: '{"a":1}' }], rest: '' },
  { name: 'a partial message stays', in: 'id: 7\ndata: x\n\nid: 8\nda', messages: [{ id: '7', event: 'message', data: 'x' }], rest: 'id: 8\nda' },
  { name: 'comments are skipped', in: ': keep-alive\n\n', messages: [], rest: '' },
  { name: 'CRLF and several data lines', in: 'data: a\r\ndata: b\r\n\r\n', messages: [{ id: '', event: 'message', data: 'a\nb' }], rest: '' },
  { name: 'no space after the colon', in: 'data:x\n\n', messages: [{ id: '', event: 'message', data: 'x' }], rest: '' },
];
for (const c of cases) {
  test(c.name, () => {
    const got = parseSSE(c.in);
    assert.deepEqual(got.messages, c.messages);
    assert.equal(got.rest, c.rest);
  });
}
