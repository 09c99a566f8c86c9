// Reading DTDL interfaces as the explorer shows them.

/** asList returns v as an array: [] for undefined, [v] for one value. */
export function asList(v) {
  if (v === undefined || v === null) return [];
  return Array.isArray(v) ? v : [v];
}

/** kinds returns the @type of a content as a list, e.g. ["Property", "Temperature"]. */
export function kinds(c) {
  return asList(c['@type']);
}

/** kindOf returns which of Property, Telemetry, Relationship, Component, Command c is. */
export function kindOf(c) {
  return kinds(c).find((k) => ['Property', 'Telemetry', 'Relationship', 'Component', 'Command'].includes(k)) || '?';
}

/** schemaText renders a schema: its name, a DTMI, or a complex schema in short. */
export function schemaText(s) {
  if (s === undefined) return '';
  if (typeof s === 'string') return s.replace(/^dtmi:dtdl:instance:Schema:/, '');
  if (Array.isArray(s)) return s.map(schemaText).join(' | ');
  const t = asList(s['@type'])[0] || 'schema';
  switch (t) {
    case 'Object':
      return `Object{${asList(s.fields).map((f) => `${f.name}: ${schemaText(f.schema)}`).join(', ')}}`;
    case 'Map':
      return `Map<${schemaText(s.mapKey && s.mapKey.schema)}, ${schemaText(s.mapValue && s.mapValue.schema)}>`;
    case 'Array':
      return `Array<${schemaText(s.elementSchema)}>`;
    case 'Enum':
      return `Enum<${schemaText(s.valueSchema)}>{${asList(s.enumValues).map((v) => v.name).join(', ')}}`;
    default:
      return t;
  }
}

const numeric = new Set(['double', 'float', 'integer', 'long']);

/** isNumeric reports whether a schema holds numbers. */
export function isNumeric(s) {
  return typeof s === 'string' && numeric.has(s);
}

/** parseValue turns what the user typed into a value of schema s. */
export function parseValue(s, text) {
  if (typeof s === 'string') {
    if (numeric.has(s)) {
      const n = Number(text);
      if (text.trim() === '' || Number.isNaN(n)) throw new Error(`"${text}" is not a number`);
      return n;
    }
    if (s === 'boolean') {
      if (text !== 'true' && text !== 'false') throw new Error('enter true or false');
      return text === 'true';
    }
    if (s === 'string' || s === 'date' || s === 'dateTime' || s === 'time' || s === 'duration') return text;
  }
  if (s && typeof s === 'object' && asList(s['@type'])[0] === 'Enum' && s.valueSchema === 'string') return text;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error('enter a JSON value: ' + e.message);
  }
}

/** valueText renders a value for editing. */
export function valueText(v) {
  if (v === undefined) return '';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** resolved returns an interface's contents with those it inherits, nearest first, from
 *  models, a Map of id to the model definition. */
export function resolvedContents(id, models, seen = new Set()) {
  if (seen.has(id)) return [];
  seen.add(id);
  const m = models.get(id);
  if (!m) return [];
  const own = asList(m.contents);
  const names = new Set(own.map((c) => c.name));
  const inherited = asList(m.extends)
    .flatMap((e) => (typeof e === 'string' ? resolvedContents(e, models, seen) : asList(e.contents)))
    .filter((c) => !names.has(c.name));
  return [...own, ...inherited];
}

/** colorAt returns the i-th of a sequence of distinct colours: hues a golden angle apart. */
export function colorAt(i) {
  return `hsl(${Math.round((200 + i * 137.508) % 360)}, 65%, 50%)`;
}
