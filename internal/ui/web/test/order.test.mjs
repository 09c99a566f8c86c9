import { test } from 'node:test';
import assert from 'node:assert/strict';
import { orderModels, parseModelFile, references } from '../src/order.js';

const iface = (id, extra = {}) => ({ '@id': id, '@type': 'Interface', '@context': 'dtmi:dtdl:context;3', ...extra });

test('references names extends, schemas and targets, not its own ids', () => {
  const m = iface('dtmi:a:Room;1', {
    extends: ['dtmi:a:Space;1'],
    contents: [
      { '@type': 'Component', name: 'c', schema: 'dtmi:a:Thermostat;1' },
      { '@type': 'Relationship', '@id': 'dtmi:a:Room:rel;1', name: 'r', target: 'dtmi:a:Floor;1' },
      { '@type': 'Property', name: 'p', schema: 'double' },
    ],
  });
  assert.deepEqual(references(m).sort(), ['dtmi:a:Floor;1', 'dtmi:a:Space;1', 'dtmi:a:Thermostat;1']);
});

const ids = (batches) => batches.map((b) => b.map((m) => m['@id']));

const cases = [
  {
    name: 'a chain out of order comes dependencies first',
    models: [iface('dtmi:a:C;1', { extends: 'dtmi:a:B;1' }), iface('dtmi:a:B;1', { extends: 'dtmi:a:A;1' }), iface('dtmi:a:A;1')],
    max: 1,
    want: [['dtmi:a:A;1'], ['dtmi:a:B;1'], ['dtmi:a:C;1']],
  },
  {
    name: 'mutual references share a batch',
    models: [
      iface('dtmi:a:X;1', { contents: [{ '@type': 'Relationship', name: 'r', target: 'dtmi:a:Y;1' }] }),
      iface('dtmi:a:Y;1', { contents: [{ '@type': 'Relationship', name: 'r', target: 'dtmi:a:X;1' }] }),
      iface('dtmi:a:Z;1', { extends: 'dtmi:a:X;1' }),
    ],
    max: 2,
    want: [['dtmi:a:Y;1', 'dtmi:a:X;1'], ['dtmi:a:Z;1']],
  },
  {
    name: 'references outside the set are the server\'s',
    models: [iface('dtmi:a:B;1', { extends: 'dtmi:other:A;1' })],
    max: 250,
    want: [['dtmi:a:B;1']],
  },
  {
    name: 'batches fill up to the limit',
    models: Array.from({ length: 5 }, (_, i) => iface(`dtmi:a:M${i};1`)),
    max: 2,
    want: [['dtmi:a:M0;1', 'dtmi:a:M1;1'], ['dtmi:a:M2;1', 'dtmi:a:M3;1'], ['dtmi:a:M4;1']],
  },
];
for (const c of cases) {
  test(c.name, () => {
    const got = ids(orderModels(c.models, c.max));
    assert.deepEqual(got.map((b) => [...b].sort()), c.want.map((b) => [...b].sort()));
    // Every reference within the set is to the same or an earlier batch.
    const batchOf = new Map(got.flatMap((b, i) => b.map((id) => [id, i])));
    for (const m of c.models) {
      for (const r of references(m)) if (batchOf.has(r)) assert.ok(batchOf.get(r) <= batchOf.get(m['@id']));
    }
  });
}

test('a group of mutual references larger than a batch is refused', () => {
  const models = [
    iface('dtmi:a:X;1', { extends: 'dtmi:a:Y;1' }),
    iface('dtmi:a:Y;1', { extends: 'dtmi:a:X;1' }),
  ];
  assert.throws(() => orderModels(models, 1), /reference each other/);
});

test('a long chain does not overflow the stack', () => {
  const models = Array.from({ length: 20000 }, (_, i) => iface(`dtmi:a:M${i};1`, i ? { extends: `dtmi:a:M${i - 1};1` } : {}));
  const batches = orderModels(models.reverse(), 250);
  assert.equal(batches.length, 80);
  assert.equal(batches[0][0]['@id'], 'dtmi:a:M0;1');
});

test('parseModelFile takes a byte order mark, one interface or an array', () => {
  assert.equal(parseModelFile('\ufeff' + JSON.stringify(iface('dtmi:a:A;1'))).length, 1);
  assert.equal(parseModelFile(JSON.stringify([iface('dtmi:a:A;1'), iface('dtmi:a:B;1')])).length, 2);
  assert.throws(() => parseModelFile('{"@type": "Interface"}'), /without an @id/);
  assert.throws(() => parseModelFile('{'), SyntaxError);
});
