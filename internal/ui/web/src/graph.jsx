import { useEffect, useRef, useState } from 'preact/hooks';
import cytoscape from 'cytoscape';
import { forceLink, forceManyBody, forceSimulation, forceX, forceY } from 'd3-force';
import { api, describe, enc, listAll, queryAll } from './api.js';
import { colorAt } from './dtdl.js';
import { CreateTwin } from './twin.jsx';

/** collect gathers the twins and relationships of query result items into twins (id to
 *  twin) and rels (source/id to relationship): an item is one, or an object of them (a
 *  projection of several collections). */
export function collect(items, twins, rels) {
  const take = (v) => {
    if (!v || typeof v !== 'object') return;
    if (typeof v.$dtId === 'string') twins.set(v.$dtId, v);
    else if (typeof v.$relationshipId === 'string') rels.set(v.$sourceId + '/' + v.$relationshipId, v);
  };
  for (const item of items) {
    if (item && (item.$dtId || item.$relationshipId)) take(item);
    else if (item && typeof item === 'object') Object.values(item).forEach(take);
  }
}

const quote = (s) => "'" + s.replace(/\\/g, '\\\\').replace(/'/g, "\\'") + "'";

/** relationshipsAmong fetches the relationships whose source is one of ids, 50 ids (the
 *  query language's IN limit) a query, four queries at a time. */
async function relationshipsAmong(ids, asOf, rels) {
  const chunks = [];
  for (let i = 0; i < ids.length; i += 50) chunks.push(ids.slice(i, i + 50));
  let next = 0;
  const worker = async () => {
    while (next < chunks.length) {
      const chunk = chunks[next++];
      const q = `SELECT R FROM RELATIONSHIPS R WHERE R.$sourceId IN [${chunk.map(quote).join(', ')}]`;
      collect(await queryAll(q, { asOf }), new Map(), rels);
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

/** forceLayout places the nodes by a force simulation run to rest off screen, which is much
 *  faster than animating it, and returns id to position. */
function forceLayout(ids, edges) {
  const nodes = ids.map((id) => ({ id }));
  const links = edges.map((e) => ({ source: e.source, target: e.target }));
  // A coarser Barnes–Hut approximation (theta) halves the cost of large graphs' ticks.
  const sim = forceSimulation(nodes)
    .force('charge', forceManyBody().strength(-40).theta(nodes.length > 1500 ? 1.5 : 0.95).distanceMax(400))
    .force('link', forceLink(links).id((d) => d.id).distance(40).iterations(1))
    .force('x', forceX().strength(0.04))
    .force('y', forceY().strength(0.04))
    .stop();
  // Each tick costs about n log n; large graphs settle for fewer, which keeps a result of a
  // few thousand twins drawn within a second or two.
  const ticks = nodes.length > 1500 ? 25 : nodes.length > 300 ? 120 : 300;
  for (let i = 0; i < ticks; i++) sim.tick();
  const pos = new Map();
  for (const n of nodes) pos.set(n.id, { x: n.x, y: n.y });
  return pos;
}

function modelOf(t) {
  return (t.$metadata && t.$metadata.$model) || '?';
}

/** styles is the graph's style sheet; each model's twins are coloured by a class (m0, m1, ...
 *  in the order of models), which cytoscape styles faster than a per-twin data mapping. */
function styles(big, models) {
  return [
    // Measuring thousands of labels is most of the cost of drawing a large graph: there only
    // the selected twins are labelled.
    { selector: 'node', style: {
      'background-color': '#888', label: big ? '' : 'data(id)', 'font-size': 9, 'min-zoomed-font-size': 7,
      color: '#888', width: 14, height: 14, 'text-valign': 'bottom', 'text-margin-y': 2 } },
    ...models.map((m, i) => ({ selector: '.m' + i, style: { 'background-color': colorAt(i) } })),
    { selector: 'node:selected', style: { 'border-width': 3, 'border-color': '#f0a000', width: 20, height: 20, label: 'data(id)' } },
    { selector: 'edge', style: big
      ? { 'curve-style': 'haystack', width: 1, 'line-color': '#9aa4b1', opacity: 0.7 }
      : { 'curve-style': 'straight', width: 1.2, 'line-color': '#9aa4b1', 'target-arrow-shape': 'triangle',
        'target-arrow-color': '#9aa4b1', 'arrow-scale': 0.7, label: 'data(name)', 'font-size': 7,
        'min-zoomed-font-size': 8, color: '#888' } },
    { selector: '.hidden', style: { display: 'none' } },
  ];
}

/** GraphView runs an ADT query and shows its twins and relationships as a graph or a table. */
export function GraphView({ active, selected, onSelect, version }) {
  const [query, setQuery] = useState(sessionStorage.getItem('twinflow.query') || 'SELECT * FROM digitaltwins');
  const [asOf, setAsOf] = useState('');
  const [layout, setLayout] = useState('force');
  const [tab, setTab] = useState('graph');
  const [status, setStatus] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const [counts, setCounts] = useState(null); // {twins, rels, models: [[model, n]]}
  const [hiddenModels, setHiddenModels] = useState(new Set());
  const [creating, setCreating] = useState(false);
  const data = useRef({ twins: new Map(), rels: new Map(), classOf: new Map() });
  const box = useRef();
  const cy = useRef(null);
  const onSelectRef = useRef(onSelect);
  onSelectRef.current = onSelect;

  const draw = (started) => {
    const { twins, rels } = data.current;
    const ids = [...twins.keys()];
    const edges = [];
    for (const [key, r] of rels) {
      if (twins.has(r.$sourceId) && twins.has(r.$targetId)) {
        edges.push({ id: key, source: r.$sourceId, target: r.$targetId, name: r.$relationshipName });
      }
    }
    const big = ids.length + edges.length > 1500;
    const laidOut = performance.now();
    const pos = layout === 'force' ? forceLayout(ids, edges) : null;
    box.current.dataset.layoutMs = Math.round(performance.now() - laidOut);
    const elements = [];
    const models = [...new Set(ids.map((id) => modelOf(twins.get(id))))].sort();
    const classOf = new Map(models.map((m, i) => [m, 'm' + i]));
    data.current.classOf = classOf;
    for (const id of ids) {
      const m = modelOf(twins.get(id));
      elements.push({ group: 'nodes', data: { id, model: m }, classes: classOf.get(m), position: pos ? pos.get(id) : { x: 0, y: 0 } });
    }
    for (const e of edges) elements.push({ group: 'edges', data: e });
    if (cy.current) cy.current.destroy();
    const t0 = performance.now();
    const c = cytoscape({
      container: box.current, elements, style: styles(big, models),
      layout: pos ? { name: 'preset' } : { name: 'breadthfirst', directed: true, spacingFactor: 0.8, animate: false },
      textureOnViewport: big, hideEdgesOnViewport: big, hideLabelsOnViewport: big, motionBlur: false,
      pixelRatio: big ? 1 : 'auto', wheelSensitivity: 0.3, boxSelectionEnabled: true,
    });
    cy.current = c;
    box.current.dataset.cyInitMs = Math.round(performance.now() - t0);
    let pending = null;
    c.on('select unselect', 'node', () => {
      clearTimeout(pending);
      pending = setTimeout(() => onSelectRef.current(c.nodes(':selected').map((n) => n.id())), 30);
    });
    for (const id of selected) c.getElementById(id).select();
    // A few twins would be drawn huge: no closer than 1.5.
    if (c.zoom() > 1.5) {
      c.zoom(1.5);
      c.center();
    }
    const el = box.current;
    el.dataset.nodes = c.nodes().length;
    el.dataset.edges = c.edges().length;
    c.one('render', () => {
      if (started !== undefined) {
        const ms = Math.round(performance.now() - started);
        el.dataset.drawMs = ms;
        setStatus((s) => s + ` Drawn in ${ms} ms.`);
      }
    });
    const byModel = new Map();
    for (const t of twins.values()) byModel.set(modelOf(t), (byModel.get(modelOf(t)) || 0) + 1);
    setCounts({ twins: ids.length, rels: edges.length, models: [...byModel].sort() });
    setHiddenModels(new Set());
  };

  const run = async (e) => {
    if (e) e.preventDefault();
    const started = performance.now();
    sessionStorage.setItem('twinflow.query', query);
    setBusy(true);
    setError('');
    setStatus('Running the query…');
    try {
      const at = asOf ? new Date(asOf).toISOString() : undefined;
      const rels = new Map();
      // A result of whole twins has no relationships of its own: those among its twins
      // are fetched page by page as the pages arrive, while the next page is read.
      const fetching = [];
      const items = await queryAll(query, { asOf: at, onPage: (n, page) => {
        setStatus(`Running the query… ${n} items`);
        if (page.length && page.every((x) => x && typeof x.$dtId === 'string')) {
          fetching.push(relationshipsAmong(page.map((x) => x.$dtId), at, rels));
        }
      } });
      const twins = new Map();
      collect(items, twins, rels);
      const queried = performance.now();
      setStatus(`${twins.size} twins; fetching the relationships among them…`);
      await Promise.all(fetching);
      box.current.dataset.queryMs = Math.round(queried - started);
      box.current.dataset.relationshipsMs = Math.round(performance.now() - queried);
      data.current = { twins, rels, classOf: new Map() };
      setStatus(`${items.length} items: ${twins.size} twins, ${rels.size} relationships${at ? ' as of ' + at : ''}.`);
      draw(started);
    } catch (err) {
      setError(describe(err));
      setStatus('');
    }
    setBusy(false);
  };

  // A container that was hidden has to be measured again.
  useEffect(() => { if (active && tab === 'graph' && cy.current) cy.current.resize(); }, [active, tab]);
  // Layout changes redraw what is there.
  useEffect(() => { if (counts) draw(); }, [layout]);
  useEffect(() => () => cy.current && cy.current.destroy(), []);
  // A change made elsewhere (the twin panel) updates the twins shown.
  useEffect(() => {
    if (!cy.current || !selected.length) return;
    Promise.all(selected.map((id) => api('GET', `/digitaltwins/${enc(id)}`).catch(() => null))).then((ts) => {
      for (const t of ts) if (t && data.current.twins.has(t.$dtId)) data.current.twins.set(t.$dtId, t);
    });
  }, [version]);

  const filter = (model, shown) => {
    const h = new Set(hiddenModels);
    if (shown) h.delete(model);
    else h.add(model);
    setHiddenModels(h);
    const c = cy.current;
    c.batch(() => {
      c.nodes().forEach((n) => {
        if (n.data('model') === model) n.toggleClass('hidden', !shown);
      });
    });
    box.current.dataset.visibleNodes = c.nodes().filter((n) => !n.hasClass('hidden')).length;
  };

  const expand = async () => {
    setBusy(true);
    setError('');
    try {
      const { twins, rels } = data.current;
      const found = new Map();
      for (const id of selected) {
        const [out, inc] = await Promise.all([
          listAll(`/digitaltwins/${enc(id)}/relationships`),
          listAll(`/digitaltwins/${enc(id)}/incomingrelationships`),
        ]);
        collect(out, new Map(), found);
        // Incoming relationships are listed without their properties: fetch each.
        for (const r of inc) {
          const full = await api('GET', `/digitaltwins/${enc(r.$sourceId)}/relationships/${enc(r.$relationshipId)}`);
          found.set(full.$sourceId + '/' + full.$relationshipId, full);
        }
      }
      const missing = new Set();
      for (const r of found.values()) {
        for (const id of [r.$sourceId, r.$targetId]) if (!twins.has(id)) missing.add(id);
      }
      const fetched = await Promise.all([...missing].map((id) => api('GET', `/digitaltwins/${enc(id)}`).catch(() => null)));
      const c = cy.current;
      const added = [];
      for (const t of fetched) {
        if (!t) continue;
        twins.set(t.$dtId, t);
        const near = [...found.values()].find((r) => r.$sourceId === t.$dtId || r.$targetId === t.$dtId);
        const other = near && c.getElementById(near.$sourceId === t.$dtId ? near.$targetId : near.$sourceId);
        const p = other && other.length ? other.position() : { x: 0, y: 0 };
        const m = modelOf(t);
        const classOf = data.current.classOf;
        if (!classOf.has(m)) {
          classOf.set(m, 'm' + classOf.size);
          c.style().selector('.' + classOf.get(m)).style({ 'background-color': colorAt(classOf.size - 1) }).update();
        }
        added.push({ group: 'nodes', data: { id: t.$dtId, model: m }, classes: classOf.get(m),
          position: { x: p.x + (Math.random() - 0.5) * 120, y: p.y + (Math.random() - 0.5) * 120 } });
      }
      for (const [key, r] of found) {
        rels.set(key, r);
        // A relationship fetched before may not be drawn yet, as its other twin was not.
        if (!c.getElementById(key).length && twins.has(r.$sourceId) && twins.has(r.$targetId)) {
          added.push({ group: 'edges', data: { id: key, source: r.$sourceId, target: r.$targetId, name: r.$relationshipName } });
        }
      }
      c.add(added);
      box.current.dataset.nodes = c.nodes().length;
      box.current.dataset.edges = c.edges().length;
      const byModel = new Map();
      for (const t of twins.values()) byModel.set(modelOf(t), (byModel.get(modelOf(t)) || 0) + 1);
      setCounts({ twins: c.nodes().length, rels: c.edges().length, models: [...byModel].sort() });
      setStatus(`Expanded: ${added.length} elements added.`);
    } catch (err) {
      setError(describe(err));
    }
    setBusy(false);
  };

  const { twins, rels } = data.current;
  const rows = [...twins.values()].slice(0, 500);
  const relRows = [...rels.values()].slice(0, 500);
  return (
    <div class="graph-view">
      <form class="query" onSubmit={run} aria-label="Query">
        <label for="query-text">ADT query</label>
        <textarea id="query-text" rows="2" value={query} onInput={(e) => { setQuery(e.currentTarget.value); sessionStorage.setItem('twinflow.query', e.currentTarget.value); }}
          onKeyDown={(e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) run(e); }} />
        <div class="row">
          <button id="run-query" type="submit" disabled={busy}>Run query</button>
          <label>As of <input id="as-of" type="datetime-local" step="1" value={asOf} onInput={(e) => setAsOf(e.currentTarget.value)} /></label>
          <label>Layout <select id="layout" value={layout} onChange={(e) => setLayout(e.currentTarget.value)}>
            <option value="force">force</option><option value="layered">layered</option></select></label>
          <button type="button" onClick={expand} disabled={busy || !selected.length || !counts}>Expand neighbours</button>
          <button type="button" onClick={() => setCreating(!creating)} aria-expanded={creating}>New twin</button>
        </div>
      </form>
      {creating && <CreateTwin onDone={() => setCreating(false)} />}
      <p id="query-status" role="status">{status}</p>
      {error && <p id="query-error" role="alert" class="error">{error}</p>}
      <div class="tabs" role="tablist" aria-label="Result as">
        <button type="button" role="tab" aria-selected={tab === 'graph'} onClick={() => setTab('graph')}>Graph</button>
        <button type="button" role="tab" aria-selected={tab === 'table'} onClick={() => setTab('table')}>Table</button>
      </div>
      <div class="graph-area" hidden={tab !== 'graph'}>
        <div id="graph" ref={box} class="graph" aria-label="Graph of the query's twins and relationships" role="img" />
        {counts && (
          <fieldset class="legend">
            <legend>Models ({counts.twins} twins, {counts.rels} relationships)</legend>
            {counts.models.map(([m, n]) => (
              <label class="legend-item">
                <input type="checkbox" checked={!hiddenModels.has(m)} onChange={(e) => filter(m, e.currentTarget.checked)} />
                <span class="swatch" style={{ background: colorAt(data.current.classOf.has(m) ? Number(data.current.classOf.get(m).slice(1)) : 0) }} />{m} ({n})
              </label>
            ))}
          </fieldset>
        )}
      </div>
      {tab === 'table' && (
        <div class="table-area">
          <table id="twin-table">
            <caption>Twins{twins.size > rows.length ? ` (the first ${rows.length} of ${twins.size})` : ''}</caption>
            <thead><tr><th scope="col">$dtId</th><th scope="col">Model</th><th scope="col">Properties</th></tr></thead>
            <tbody>{rows.map((t) => (
              <tr><td><button type="button" class="link" onClick={() => onSelect([t.$dtId])}>{t.$dtId}</button></td>
                <td>{modelOf(t)}</td>
                <td><code>{JSON.stringify(Object.fromEntries(Object.entries(t).filter(([k]) => !k.startsWith('$'))))}</code></td></tr>
            ))}</tbody>
          </table>
          <table id="rel-table">
            <caption>Relationships{rels.size > relRows.length ? ` (the first ${relRows.length} of ${rels.size})` : ''}</caption>
            <thead><tr><th scope="col">Source</th><th scope="col">Name</th><th scope="col">Target</th><th scope="col">Id</th></tr></thead>
            <tbody>{relRows.map((r) => (
              <tr><td>{r.$sourceId}</td><td>{r.$relationshipName}</td><td>{r.$targetId}</td><td>{r.$relationshipId}</td></tr>
            ))}</tbody>
          </table>
        </div>
      )}
    </div>
  );
}
