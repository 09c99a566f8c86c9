// Server-sent events read with fetch(), so that the request carries the Authorization header
// (EventSource cannot send one).

/** parseSSE splits buffered stream text into complete messages and the rest: each message
 *  is {id, event, data}; comments and messages without data are skipped. */
export function parseSSE(text) {
  const messages = [];
  const blocks = text.replace(/\r\n?/g, '\n').split('\n\n');
  const rest = blocks.pop();
  for (const block of blocks) {
    const m = { id: '', event: 'message', data: [] };
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? '' : line.slice(i + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') m.data.push(value);
      else if (field === 'id') m.id = value;
      else if (field === 'event') m.event = value;
    }
    if (m.data.length) messages.push({ id: m.id, event: m.event, data: m.data.join('\n') });
  }
  return { messages, rest };
}

/** readStream reads the SSE response res, calling onMessage for each message, until the
 *  stream ends or signal aborts. */
export async function readStream(res, onMessage) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    const { messages, rest } = parseSSE(buf);
    buf = rest;
    for (const m of messages) onMessage(m);
  }
}
