// Ordering of a set of DTDL interfaces for upload: each batch only references interfaces of
// its own batch, earlier batches, or the server.

const dtmiPattern = /^dtmi:[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?(?::[A-Za-z_](?:[A-Za-z0-9_]*[A-Za-z0-9])?)*(?:;[1-9][0-9]{0,8}(?:\.[1-9][0-9]{0,5})?)?$/;

/** references returns the DTMIs a model names anywhere (extends, schemas, targets, ...), but
 *  for its own and those of the elements it defines. */
export function references(model) {
  const defined = new Set();
  const named = new Set();
  const walk = (v, key) => {
    if (typeof v === 'string') {
      if (key === '@id') defined.add(v);
      else if (key !== '@context' && dtmiPattern.test(v)) named.add(v);
    } else if (Array.isArray(v)) {
      for (const x of v) walk(x, key);
    } else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) walk(x, k);
    }
  };
  walk(model, '');
  return [...named].filter((id) => !defined.has(id));
}

/** orderModels returns the models in batches of at most max: the models each references
 *  within the set come in an earlier batch or the same one, and models that reference each
 *  other (directly or not) share a batch. It throws if such a group exceeds max. */
export function orderModels(models, max = 250) {
  const byId = new Map();
  for (const m of models) byId.set(m['@id'], m);
  const deps = new Map();
  for (const m of models) deps.set(m['@id'], references(m).filter((id) => byId.has(id)));

  // Tarjan's strongly connected components; they come out dependencies first.
  const index = new Map();
  const low = new Map();
  const onStack = new Set();
  const stack = [];
  const groups = [];
  let counter = 0;
  const visit = (root) => {
    // An explicit stack, so that long chains of extends do not overflow the call stack.
    const work = [[root, 0]];
    index.set(root, counter);
    low.set(root, counter++);
    stack.push(root);
    onStack.add(root);
    while (work.length) {
      const frame = work[work.length - 1];
      const [v, i] = frame;
      const ds = deps.get(v);
      if (i < ds.length) {
        frame[1]++;
        const w = ds[i];
        if (!index.has(w)) {
          index.set(w, counter);
          low.set(w, counter++);
          stack.push(w);
          onStack.add(w);
          work.push([w, 0]);
        } else if (onStack.has(w)) {
          low.set(v, Math.min(low.get(v), index.get(w)));
        }
        continue;
      }
      work.pop();
      if (work.length) {
        const parent = work[work.length - 1][0];
        low.set(parent, Math.min(low.get(parent), low.get(v)));
      }
      if (low.get(v) === index.get(v)) {
        const group = [];
        let w;
        do {
          w = stack.pop();
          onStack.delete(w);
          group.push(byId.get(w));
        } while (w !== v);
        groups.push(group);
      }
    }
  };
  for (const m of models) if (!index.has(m['@id'])) visit(m['@id']);

  const batches = [];
  let batch = [];
  for (const g of groups) {
    if (g.length > max) {
      throw new Error(`${g.length} models reference each other (${g.slice(0, 3).map((m) => m['@id']).join(', ')}, ...): more than ${max} cannot be uploaded in one request.`);
    }
    if (batch.length + g.length > max) {
      batches.push(batch);
      batch = [];
    }
    batch.push(...g);
  }
  if (batch.length) batches.push(batch);
  return batches;
}

/** parseModelFile parses the text of a model file (a UTF-8 byte order mark allowed): one
 *  interface or an array of them. */
export function parseModelFile(text) {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const v = JSON.parse(text);
  const list = Array.isArray(v) ? v : [v];
  for (const m of list) {
    if (!m || typeof m !== 'object' || typeof m['@id'] !== 'string') {
      throw new Error('an interface without an @id');
    }
  }
  return list;
}
