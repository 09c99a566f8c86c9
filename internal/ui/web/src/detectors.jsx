import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { api, describe, enc, nextPath } from './api.js';
import { Cell, useList } from './flows.jsx';

/** template is the definition a new detector starts from. */
const template = {
  twins: 'SELECT * FROM DIGITALTWINS WHERE IS_OF_MODEL(\'dtmi:example:Room;1\')',
  properties: ['Temperature'],
  method: 'auto',
  sensitivity: 0.5,
  warmUp: 100,
};

/** definitionOf returns the members of a listed detector that its PUT takes. */
function definitionOf(d) {
  const { twins, properties, method, sensitivity, warmUp } = d;
  return { twins, properties, method, sensitivity, warmUp };
}

/** hashParams returns the parameters after the view's name in the location's hash
 *  (#/detectors?detector=rooms&twin=room-1&property=Temperature). */
function hashParams() {
  const i = location.hash.indexOf('?');
  return new URLSearchParams(i < 0 ? '' : location.hash.slice(i + 1));
}

/** backtestAll scores one series with the detector name over data history, following the
 *  continuationToken through every page, and returns every point. */
export async function backtestAll(name, body) {
  const points = [];
  let token = null;
  do {
    const req = token ? { ...body, continuationToken: token } : body;
    const page = await api('POST', `/detectors/${enc(name)}/backtest`, { body: req, headers: { 'max-items-per-page': '1000' } });
    points.push(...(page.value || []));
    token = page.continuationToken || null;
  } while (token);
  return points;
}

/** BacktestChart draws the values of a backtest over time (left axis) with their scores
 *  (right axis, 0 to 1), and marks each anomaly with an element over the plot whose title
 *  tells its kind and score. */
function BacktestChart({ points: scored, property }) {
  const ref = useRef();
  useEffect(() => {
    const el = ref.current;
    el.dataset.points = 0;
    el.dataset.anomalies = 0;
    if (!scored.length) return undefined;
    // A point's time is its source time when it has one, which need not grow with the log's
    // order; uPlot draws its x values in order.
    const points = scored.map((p) => ({ ...p, t: Date.parse(p.time) / 1000 })).sort((a, b) => a.t - b.t);
    const xs = points.map((p) => p.t);
    const drawMarkers = (u) => {
      for (const m of u.over.querySelectorAll('.anomaly-marker')) m.remove();
      let n = 0;
      points.forEach((p, i) => {
        if (!p.anomaly) return;
        const m = document.createElement('span');
        m.className = 'anomaly-marker';
        m.style.left = `${u.valToPos(xs[i], 'x')}px`;
        m.style.top = `${u.valToPos(p.value, 'y')}px`;
        m.title = `${p.kind || 'anomaly'}: ${p.value} at ${p.time}, score ${p.score.toFixed(3)}`;
        m.dataset.time = p.time;
        m.dataset.kind = p.kind || '';
        u.over.appendChild(m);
        n++;
      });
      el.dataset.anomalies = n;
    };
    const plot = new uPlot({
      width: Math.max(320, el.clientWidth - 8), height: 320,
      series: [
        {},
        { label: property, stroke: '#1f6feb', width: 1.5, points: { show: true, size: 4 } },
        { label: 'score', stroke: '#f0a000', width: 1, scale: 'score', points: { show: false } },
      ],
      axes: [
        { stroke: '#888', grid: { stroke: '#8883' } },
        { stroke: '#888', grid: { stroke: '#8883' }, label: property },
        { stroke: '#f0a000', scale: 'score', side: 1, grid: { show: false }, label: 'score' },
      ],
      scales: { x: { time: true }, score: { range: [0, 1] } },
      hooks: { draw: [drawMarkers] },
    }, [xs, points.map((p) => p.value), points.map((p) => p.score)], el);
    el.dataset.points = points.length;
    return () => plot.destroy();
  }, [scored]);
  return <div id="backtest-chart" class="chart" ref={ref} role="img" aria-label={`${property} and its anomaly scores over time`} />;
}

/** Backtest picks a detector, a twin, one of the detector's properties and a time range,
 *  and charts the series' scores over data history, with its anomalies listed. */
function Backtest({ detectors, pick }) {
  const [name, setName] = useState(pick.detector || '');
  const [twin, setTwin] = useState(pick.twin || '');
  const [property, setProperty] = useState(pick.property || '');
  const [from, setFrom] = useState('');
  const [to, setTo] = useState('');
  const [points, setPoints] = useState([]);
  const [shown, setShown] = useState(null); // {property, count, anomalies}
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const chosen = (detectors || []).find((d) => d.name === name);
  useEffect(() => {
    if (!name && detectors && detectors.length) setName(detectors[0].name);
  }, [detectors]);
  useEffect(() => {
    if (chosen && !property) setProperty(chosen.properties[0] || '');
  }, [chosen && chosen.name]);
  const run = async (e) => {
    e.preventDefault();
    setError('');
    setBusy(true);
    const body = { twinId: twin, property };
    if (from) body.from = new Date(from).toISOString();
    if (to) body.to = new Date(to).toISOString();
    try {
      const got = await backtestAll(name, body);
      setPoints(got);
      setShown({ property, count: got.length, anomalies: got.filter((p) => p.anomaly) });
    } catch (err) {
      setPoints([]);
      setShown(null);
      setError(describe(err));
    }
    setBusy(false);
  };
  return (
    <section aria-label="Backtest">
      <h2>Backtest</h2>
      <form onSubmit={run} class="row wrap" aria-label="Backtest a series">
        <label>Detector <select id="backtest-detector" value={name} onChange={(e) => { setName(e.currentTarget.value); setProperty(''); }} required>
          {(detectors || []).map((d) => <option value={d.name}>{d.name}</option>)}</select></label>
        <label>Twin <input id="backtest-twin" value={twin} onInput={(e) => setTwin(e.currentTarget.value)} required /></label>
        <label>Property <input id="backtest-property" list="backtest-properties" value={property} onInput={(e) => setProperty(e.currentTarget.value)} required /></label>
        <datalist id="backtest-properties">{(chosen ? chosen.properties : []).map((p) => <option value={p} />)}</datalist>
        <label>From <input id="backtest-from" type="datetime-local" step="1" value={from} onInput={(e) => setFrom(e.currentTarget.value)} /></label>
        <label>To <input id="backtest-to" type="datetime-local" step="1" value={to} onInput={(e) => setTo(e.currentTarget.value)} /></label>
        <button id="backtest-run" type="submit" disabled={busy || !name}>Run backtest</button>
      </form>
      {error && <p role="alert" class="error" id="backtest-error">{error}</p>}
      {shown && <p role="status" id="backtest-status">{shown.count} points of {shown.property} scored, {shown.anomalies.length} anomalies.</p>}
      <BacktestChart points={points} property={shown ? shown.property : property} />
      {shown && shown.anomalies.length > 0 && (
        <table id="backtest-anomalies">
          <caption>Anomalies</caption>
          <thead><tr><th scope="col">Time</th><th scope="col">Value</th><th scope="col">Score</th><th scope="col">Kind</th></tr></thead>
          <tbody>{shown.anomalies.map((p) => <tr><Cell v={p.time} /><Cell v={p.value} /><Cell v={p.score.toFixed(3)} /><Cell v={p.kind} /></tr>)}</tbody>
        </table>
      )}
    </section>
  );
}

/** Editor creates or replaces a detector from its JSON definition, showing the server's
 *  refusal with every detail. */
function Editor({ initial, onSaved }) {
  const [name, setName] = useState(initial.name);
  const [text, setText] = useState(JSON.stringify(initial.definition, null, 2));
  const [error, setError] = useState('');
  const [notice, setNotice] = useState('');
  const save = async (e) => {
    e.preventDefault();
    setError('');
    setNotice('');
    let body;
    try {
      body = JSON.parse(text);
    } catch (err) {
      setError('The definition is not JSON: ' + err.message);
      return;
    }
    try {
      const res = await api('PUT', `/detectors/${enc(name)}`, { body });
      setNotice(`Saved ${res.name}.`);
      onSaved();
    } catch (err) {
      setError(describe(err));
    }
  };
  return (
    <form class="detector-editor" onSubmit={save} aria-label="Detector definition">
      <h2>{initial.name ? 'Edit ' + initial.name : 'New detector'}</h2>
      <label>Name <input id="detector-name" value={name} onInput={(e) => setName(e.currentTarget.value)} required readOnly={!!initial.name} /></label>
      <label for="detector-definition">Definition (JSON: twins, properties, method, sensitivity, warmUp)</label>
      <textarea id="detector-definition" rows="8" value={text} onInput={(e) => setText(e.currentTarget.value)} />
      <button id="detector-save" type="submit">Save</button>
      {error && <pre role="alert" class="error" id="detector-error">{error}</pre>}
      {notice && <p role="status" class="ok" id="detector-notice">{notice}</p>}
    </form>
  );
}

/** DetectorsView lists the anomaly detectors with their live status, creates, edits and
 *  deletes them, and backtests one over data history. */
export function DetectorsView() {
  const [reload, setReload] = useState(0);
  const [detectors, error] = useList('/detectors', 3000, reload);
  const [editing, setEditing] = useState(null); // {name, definition}
  const [confirm, setConfirm] = useState('');
  const [notice, setNotice] = useState('');
  const [pick] = useState(() => Object.fromEntries(hashParams()));
  const bump = () => setReload(reload + 1);
  const remove = async (name) => {
    setConfirm('');
    try {
      await api('DELETE', `/detectors/${enc(name)}`);
      setNotice(`Deleted ${name}.`);
      if (editing && editing.name === name) setEditing(null);
      bump();
    } catch (e) {
      setNotice(describe(e));
    }
  };
  return (
    <div class="detectors">
      <section aria-label="Detectors">
        <div class="row">
          <h2>Detectors</h2>
          <button type="button" id="detector-new" onClick={() => setEditing({ name: '', definition: template })}>New detector</button>
        </div>
        {error && <p role="alert" class="error">{error}</p>}
        {notice && <p role="status" id="detectors-status">{notice}</p>}
        <table id="detector-table">
          <thead><tr><th scope="col">Name</th><th scope="col">Method</th><th scope="col">State</th><th scope="col">Twins</th><th scope="col">Points</th>
            <th scope="col">Anomalies</th><th scope="col">Lag (records)</th><th scope="col">Lag (s)</th><th scope="col">Last error</th><th scope="col" /></tr></thead>
          <tbody>{(detectors || []).map((d) => {
            const s = d.status || {};
            return (
              <tr data-detector={d.name}>
                <td><span title={d.twins}>{d.name}</span></td><Cell v={d.method} /><Cell v={s.state} /><Cell v={s.twins} /><Cell v={s.points} />
                <Cell v={s.anomalies} /><Cell v={s.lagRecords} /><Cell v={s.lagSeconds !== undefined ? s.lagSeconds.toFixed(1) : ''} />
                <td class="error-text">{s.lastError || ''}</td>
                <td class="row">
                  <button type="button" onClick={() => setEditing({ name: d.name, definition: definitionOf(d) })} aria-label={'Edit ' + d.name}>Edit</button>
                  {confirm === d.name
                    ? <button type="button" class="danger" onClick={() => remove(d.name)}>Really delete {d.name}</button>
                    : <button type="button" class="danger" onClick={() => setConfirm(d.name)} aria-label={'Delete ' + d.name}>Delete</button>}
                </td>
              </tr>
            );
          })}</tbody>
        </table>
        {detectors && detectors.length === 0 && <p id="no-detectors">No detectors yet.</p>}
      </section>
      {editing && <Editor key={editing.name || ':new'} initial={editing} onSaved={bump} />}
      <Backtest detectors={detectors} pick={pick} />
    </div>
  );
}

/** TwinAnomalies lists the latest anomalies detectors raised on the twin id, newest first,
 *  each linked to a backtest of its series; nothing when the server keeps no data history. */
export function TwinAnomalies({ id }) {
  const [rows, setRows] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => {
    let stop = false;
    // The anomalies are few by design (a 1-in-100,000 event at the default sensitivity), so
    // every page is read and the latest are shown.
    const read = async () => {
      const out = [];
      let next = `/digitaltwins/${enc(id)}/anomalies`;
      while (next) {
        const page = await api('GET', next);
        out.push(...(page.value || []));
        next = page.nextLink ? nextPath(page.nextLink) : null;
      }
      return out;
    };
    read().then((r) => { if (!stop) setRows(r); },
      (e) => { if (!stop && e.status !== 404) setError(describe(e)); });
    return () => { stop = true; };
  }, [id]);
  if (error) return <p role="alert" class="error">{error}</p>;
  if (!rows) return null;
  const latest = rows.slice(-latestAnomalies).reverse();
  return (
    <section aria-label={'Anomalies of ' + id}>
      <h3>Anomalies</h3>
      {rows.length === 0 ? <p id="twin-anomalies-none">None raised.</p> : (
        <>
          <p><small>{rows.length} raised{rows.length > latest.length ? `; the latest ${latest.length}` : ''}.</small></p>
          <ul id="twin-anomalies" class="anomalies">
            {latest.map((a) => (
              <li data-kind={a.kind}><time dateTime={a.timeStamp}>{new Date(a.timeStamp).toLocaleString()}</time>{' '}
                <strong>{a.kind}</strong> {a.property} = {a.value} <small>score {a.score.toFixed(3)}, {a.detector}</small>{' '}
                <a href={`#/detectors?${new URLSearchParams({ detector: a.detector, twin: id, property: a.property })}`}>Backtest</a></li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}

/** latestAnomalies is how many of a twin's anomalies its panel lists. */
const latestAnomalies = 20;
