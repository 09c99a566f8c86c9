import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { api, describe, enc, listAll } from './api.js';
import { colorAt, isNumeric, kindOf, resolvedContents } from './dtdl.js';
import { loadModels } from './models.jsx';

/** localInput renders a Date for a datetime-local input, in local time. */
function localInput(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** twinHistory fetches the history rows of a twin, of one property when property is set. */
async function twinHistory(id, property, from, to) {
  const q = new URLSearchParams();
  if (property) q.set('property', property);
  if (from) q.set('from', from);
  if (to) q.set('to', to);
  return listAll(`/digitaltwins/${enc(id)}/history?${q}`);
}

/** align turns one series per twin ({id, points: [[t, v]]}) into uPlot's data: the sorted
 *  union of the times, and per series its value at each (null where it has none). */
export function align(series) {
  const times = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const at = new Map(times.map((t, i) => [t, i]));
  const cols = series.map((s) => {
    const col = new Array(times.length).fill(null);
    for (const [t, v] of s.points) col[at.get(t)] = v;
    return col;
  });
  return [times, ...cols];
}

/** Chart draws series with uPlot. */
function Chart({ series, property }) {
  const ref = useRef();
  useEffect(() => {
    if (!series.length) return undefined;
    const el = ref.current;
    const plot = new uPlot({
      width: Math.max(320, el.clientWidth - 8), height: 320,
      series: [{}, ...series.map((s, i) => ({ label: s.id, stroke: colorAt(i), width: 1.5, spanGaps: true, points: { show: true, size: 5 } }))],
      axes: [{ stroke: '#888', grid: { stroke: '#8883' } }, { stroke: '#888', grid: { stroke: '#8883' }, label: property }],
      scales: { x: { time: true } },
    }, align(series), el);
    el.dataset.points = series.reduce((n, s) => n + s.points.length, 0);
    el.dataset.series = series.length;
    return () => plot.destroy();
  }, [series]);
  return <div id="history-chart" class="chart" ref={ref} role="img" aria-label={`${property} over time`} />;
}

/** twinLifecycle fetches the lifecycle rows of a twin and of the relationships it is the
 *  source of, in the order they happened. */
async function twinLifecycle(id, from, to) {
  const q = new URLSearchParams();
  if (from) q.set('from', from);
  if (to) q.set('to', to);
  return listAll(`/digitaltwins/${enc(id)}/lifecycle?${q}`);
}

/** lifecycleText says what a lifecycle row records. */
function lifecycleText(r) {
  const what = r.action === 'Create' ? 'created' : 'deleted';
  if (r.kind === 'twin') return `twin ${what} (${r.modelId})`;
  return `relationship ${r.relationshipName} → ${r.targetId} (${r.relationshipId}) ${what}`;
}

/** Timeline lists a twin's lifecycle (its creations and deletions and those of its
 *  relationships) and every recorded change of its properties, oldest first, grouped by
 *  time. */
function Timeline({ id, changes, lifecycle }) {
  const byTime = new Map();
  const group = (time) => {
    let g = byTime.get(time);
    if (!g) byTime.set(time, (g = { time, twin: [], changes: [], relationships: [] }));
    return g;
  };
  for (const r of lifecycle) group(r.timeStamp)[r.kind === 'twin' ? 'twin' : 'relationships'].push(r);
  for (const r of changes) group(r.timeStamp).changes.push(r);
  const groups = [...byTime.values()].sort((a, b) => Date.parse(a.time) - Date.parse(b.time) || (a.time < b.time ? -1 : 1));
  return (
    <section aria-label={'Timeline of ' + id}>
      <h3>Timeline of {id}</h3>
      {groups.length === 0 ? <p>Nothing recorded.</p> : (
        <ol id="timeline" class="timeline">
          {groups.map((g) => (
            <li><time dateTime={g.time}>{new Date(g.time).toLocaleString()}</time>{' '}
              {g.twin.map((r) => <strong class={'lifecycle ' + r.action.toLowerCase()}>{lifecycleText(r)}</strong>)}{' '}
              {g.changes.map((r) => <span class="change">{r.key} {r.action === 'delete' ? 'removed' : '= ' + JSON.stringify(r.value)}</span>)}
              {g.relationships.map((r) => <span class={'lifecycle ' + r.action.toLowerCase()}>{lifecycleText(r)}</span>)}
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}

/** HistoryView charts a numeric property of twins over a time range and shows a twin's
 *  timeline, from the data history API. */
export function HistoryView({ selected }) {
  const now = new Date();
  const [ids, setIds] = useState(selected.join(', '));
  const [property, setProperty] = useState(sessionStorage.getItem('twinflow.historyProperty') || '');
  const [from, setFrom] = useState(localInput(new Date(now - 3600e3)));
  const [to, setTo] = useState('');
  const [series, setSeries] = useState([]);
  const [timeline, setTimeline] = useState(null);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const [numeric, setNumeric] = useState([]);
  useEffect(() => { if (selected.length) setIds(selected.join(', ')); }, [selected]);
  // The numeric properties of the first twin's model are offered for the chart.
  const first = ids.split(/[\s,]+/).filter(Boolean)[0] || '';
  useEffect(() => {
    if (!first) return;
    Promise.all([api('GET', `/digitaltwins/${enc(first)}`), loadModels()]).then(([t, ms]) => {
      const models = new Map(ms.map((m) => [m.id, m.model]));
      setNumeric(resolvedContents(t.$metadata.$model, models)
        .filter((c) => kindOf(c) === 'Property' && isNumeric(c.schema)).map((c) => c.name));
    }, () => setNumeric([]));
  }, [first]);

  const show = async (e) => {
    e.preventDefault();
    setError('');
    setBusy(true);
    sessionStorage.setItem('twinflow.historyProperty', property);
    const list = ids.split(/[\s,]+/).filter(Boolean);
    const f = from ? new Date(from).toISOString() : '';
    const t = to ? new Date(to).toISOString() : '';
    try {
      const got = await Promise.all(list.map(async (id) => {
        const rows = await twinHistory(id, property, f, t);
        const points = rows.filter((r) => r.action !== 'delete' && typeof r.value === 'number')
          .map((r) => [Date.parse(r.timeStamp) / 1000, r.value]);
        return { id, points };
      }));
      setSeries(got);
      if (list.length) {
        const [changes, lifecycle] = await Promise.all([twinHistory(list[0], '', f, t), twinLifecycle(list[0], f, t)]);
        setTimeline({ id: list[0], changes, lifecycle });
      } else {
        setTimeline(null);
      }
    } catch (err) {
      setError(describe(err));
    }
    setBusy(false);
  };
  const total = series.reduce((n, s) => n + s.points.length, 0);
  return (
    <div class="history">
      <form onSubmit={show} aria-label="History" class="row wrap">
        <label>Twins <input id="history-twins" value={ids} onInput={(e) => setIds(e.currentTarget.value)} required placeholder="twin ids, comma separated" /></label>
        <label>Property <input id="history-property" list="numeric-properties" value={property} onInput={(e) => setProperty(e.currentTarget.value)} required /></label>
        <label>From <input id="history-from" type="datetime-local" step="1" value={from} onInput={(e) => setFrom(e.currentTarget.value)} /></label>
        <label>To <input id="history-to" type="datetime-local" step="1" value={to} onInput={(e) => setTo(e.currentTarget.value)} /></label>
        <datalist id="numeric-properties">{numeric.map((n) => <option value={n} />)}</datalist>
        <button id="history-show" type="submit" disabled={busy}>Show</button>
      </form>
      {error && <p role="alert" class="error">{error}</p>}
      {series.length > 0 && <p role="status" id="history-status">{total} values of {property} in {series.length} series.</p>}
      <Chart series={series} property={property} />
      {timeline && <Timeline id={timeline.id} changes={timeline.changes} lifecycle={timeline.lifecycle} />}
    </div>
  );
}
