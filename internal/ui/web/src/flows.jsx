import { useEffect, useRef, useState } from 'preact/hooks';
import { api, describe, enc, fetchAuthed, listAll, ApiError } from './api.js';
import { readStream } from './sse.js';

/** useList loads path's values, again every interval ms and when reload changes. */
export function useList(path, interval, reload) {
  const [list, setList] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => {
    let stop = false;
    const load = () => listAll(path).then((v) => { if (!stop) { setList(v); setError(''); } },
      (e) => { if (!stop) setError(e instanceof ApiError && e.status === 404 ? 'not served by this server' : describe(e)); });
    load();
    const t = setInterval(load, interval);
    return () => { stop = true; clearInterval(t); };
  }, [path, reload]);
  return [list, error];
}

/** Cell is a table cell showing v, or nothing for undefined and null. */
export function Cell({ v }) {
  return <td>{v === undefined || v === null ? '' : String(v)}</td>;
}

/** DeadLetters lists the dead letters of an endpoint or a source and redrives or deletes
 *  them. */
function DeadLetters({ kind, name, onChanged }) {
  const [reload, setReload] = useState(0);
  const [list, error] = useList(`/${kind}/${enc(name)}/deadletters`, 5000, reload);
  const [msg, setMsg] = useState('');
  const act = async (method, id, what) => {
    try {
      await api(method, `/${kind}/${enc(name)}/deadletters/${enc(id)}${what === 'redrive' ? '/redrive' : ''}`);
      setMsg(`${what === 'redrive' ? 'Redriven' : 'Deleted'}: ${id}`);
      setReload(reload + 1);
      onChanged();
    } catch (e) {
      setMsg(describe(e));
    }
  };
  return (
    <section class="deadletters" aria-label={`Dead letters of ${name}`}>
      <h3>Dead letters of {name}</h3>
      {error && <p role="alert" class="error">{error}</p>}
      {msg && <p role="status" id="deadletter-status">{msg}</p>}
      {list && list.length === 0 && <p id="no-deadletters">None.</p>}
      {list && list.length > 0 && (
        <table id="deadletter-table">
          <thead><tr><th scope="col">Id</th><th scope="col">Time</th><th scope="col">Reason</th><th scope="col">Attempts</th><th scope="col">What</th><th scope="col">Actions</th></tr></thead>
          <tbody>{list.map((d) => (
            <tr>
              <Cell v={d.id} /><Cell v={d.time} /><Cell v={d.reason} /><Cell v={d.attempts} />
              <td><code>{d.event ? `${d.event.type} ${d.event.subject || ''}` : JSON.stringify(d.message && (d.message.body || d.message.bodyText))}</code></td>
              <td>
                <button type="button" onClick={() => act('POST', d.id, 'redrive')} aria-label={'Redrive ' + d.id}>Redrive</button>{' '}
                <button type="button" class="danger" onClick={() => act('DELETE', d.id, 'delete')} aria-label={'Delete dead letter ' + d.id}>Delete</button>
              </td>
            </tr>
          ))}</tbody>
        </table>
      )}
    </section>
  );
}

/** DryRun tests a mapping against a pasted message. */
function DryRun({ mappings }) {
  const [name, setName] = useState('');
  const [topic, setTopic] = useState('');
  const [body, setBody] = useState('{}');
  const [out, setOut] = useState('');
  useEffect(() => { if (!name && mappings && mappings.length) setName(mappings[0].name); }, [mappings]);
  const run = async (e) => {
    e.preventDefault();
    let parsed;
    try {
      parsed = JSON.parse(body);
    } catch (err) {
      setOut('The message body is not JSON: ' + err.message);
      return;
    }
    try {
      const message = { body: parsed };
      if (topic) message.topic = topic;
      const res = await api('POST', `/mappings/${enc(name)}/test`, { body: { message } });
      setOut(JSON.stringify(res.result, null, 2));
    } catch (err) {
      setOut(describe(err));
    }
  };
  return (
    <form class="dryrun" onSubmit={run} aria-label="Mapping dry run">
      <h3>Dry run a mapping</h3>
      <div class="row wrap">
        <label>Mapping <select id="dryrun-mapping" value={name} onChange={(e) => setName(e.currentTarget.value)}>
          {(mappings || []).map((m) => <option value={m.name}>{m.name}</option>)}</select></label>
        <label>Topic <input id="dryrun-topic" value={topic} onInput={(e) => setTopic(e.currentTarget.value)} /></label>
      </div>
      <label for="dryrun-body">Message body (JSON)</label>
      <textarea id="dryrun-body" rows="4" value={body} onInput={(e) => setBody(e.currentTarget.value)} />
      <button type="submit" disabled={!name}>Test</button>
      {out && <pre id="dryrun-result" role="status">{out}</pre>}
    </form>
  );
}

/** Tail shows the change events of GET /events as they happen. */
function Tail() {
  const [filter, setFilter] = useState('');
  const [events, setEvents] = useState([]);
  const [state, setState] = useState('stopped');
  const [error, setError] = useState('');
  const abort = useRef(null);
  useEffect(() => () => abort.current && abort.current.abort(), []);
  // start reads the stream until it is stopped; a stream that ends or fails after it was
  // live is read again after 2 s from the last event seen (Last-Event-ID), so none is missed
  // while the server still holds it.
  const start = async () => {
    const ctl = new AbortController();
    abort.current = ctl;
    setError('');
    let last = '';
    while (!ctl.signal.aborted) {
      setState('connecting');
      let live = false;
      try {
        const q = filter ? `?filter=${enc(filter)}` : '';
        const headers = { Accept: 'text/event-stream' };
        if (last) headers['Last-Event-ID'] = last;
        const res = await fetchAuthed(`/events${q}`, { headers, signal: ctl.signal });
        if (!res.ok) {
          let message = `HTTP ${res.status}`;
          try { message = (await res.json()).error.message; } catch { /* not ADT's body */ }
          throw new Error(message);
        }
        live = true;
        setState('live');
        await readStream(res, (m) => {
          if (m.id) last = m.id;
          let ev;
          try { ev = JSON.parse(m.data); } catch { ev = { type: m.event, data: m.data }; }
          setEvents((list) => [{ seq: m.id, ev }, ...list].slice(0, 200));
        });
      } catch (e) {
        if (e.name === 'AbortError') break;
        setError(describe(e));
        if (!live) break;
      }
      if (!ctl.signal.aborted) {
        setState('reconnecting');
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
    setState('stopped');
  };
  const stop = () => {
    if (abort.current) abort.current.abort();
  };
  return (
    <section class="tail" aria-label="Live events">
      <h3>Live events</h3>
      <div class="row wrap">
        <label>Filter <input id="tail-filter" value={filter} placeholder="type = 'Microsoft.DigitalTwins.Twin.Update'" onInput={(e) => setFilter(e.currentTarget.value)} /></label>
        {state === 'stopped'
          ? <button id="tail-start" type="button" onClick={start}>Start</button>
          : <button id="tail-stop" type="button" onClick={stop}>Stop</button>}
        <span id="tail-state" role="status">{state}</span>
      </div>
      {error && <p role="alert" class="error">{error}</p>}
      <ol id="tail-events" class="events" aria-live="polite">
        {events.map(({ seq, ev }) => (
          <li><code>{seq}</code> <strong>{ev.type}</strong> {ev.subject || ''} <small>{ev.time || ''}</small>
            <details><summary>data</summary><pre>{JSON.stringify(ev.data, null, 2)}</pre></details></li>
        ))}
      </ol>
    </section>
  );
}

/** FlowsView shows endpoints, routes, sources and mappings with their live status, dead
 *  letters, mapping dry runs and the live tail of change events. */
export function FlowsView() {
  const [reload, setReload] = useState(0);
  const [endpoints, epErr] = useList('/endpoints', 3000, reload);
  const [routes, rtErr] = useList('/eventroutes', 10000, reload);
  const [sources, srcErr] = useList('/sources', 3000, reload);
  const [mappings, mapErr] = useList('/mappings', 10000, reload);
  const [dead, setDead] = useState(null); // {kind, name}
  const bump = () => setReload(reload + 1);
  return (
    <div class="flows">
      <section aria-label="Endpoints">
        <h2>Endpoints</h2>
        {epErr && <p role="alert" class="error">{epErr}</p>}
        <table id="endpoint-table">
          <thead><tr><th scope="col">Name</th><th scope="col">Type</th><th scope="col">State</th><th scope="col">Lag (events)</th><th scope="col">Lag (s)</th><th scope="col">Dead letters</th><th scope="col">Last error</th><th scope="col" /></tr></thead>
          <tbody>{(endpoints || []).map((e) => {
            const s = e.status || {};
            return (
              <tr data-endpoint={e.name}>
                <Cell v={e.name} /><Cell v={e.endpointType} /><Cell v={s.state} /><Cell v={s.lagEvents} />
                <Cell v={s.lagSeconds !== undefined ? s.lagSeconds.toFixed(1) : ''} /><Cell v={s.deadLetters} />
                <td class="error-text">{s.lastError || ''}{s.lastErrorTime ? ` (${s.lastErrorTime})` : ''}</td>
                <td><button type="button" onClick={() => setDead({ kind: 'endpoints', name: e.name })}>Dead letters</button></td>
              </tr>
            );
          })}</tbody>
        </table>
      </section>
      <section aria-label="Event routes">
        <h2>Event routes</h2>
        {rtErr && <p role="alert" class="error">{rtErr}</p>}
        <table id="route-table">
          <thead><tr><th scope="col">Id</th><th scope="col">Endpoint</th><th scope="col">Filter</th></tr></thead>
          <tbody>{(routes || []).map((r) => <tr><Cell v={r.id} /><Cell v={r.endpointName} /><td><code>{r.filter}</code></td></tr>)}</tbody>
        </table>
      </section>
      <section aria-label="Sources">
        <h2>Sources</h2>
        {srcErr && <p role="alert" class="error">{srcErr}</p>}
        <table id="source-table">
          <thead><tr><th scope="col">Name</th><th scope="col">Type</th><th scope="col">State</th><th scope="col">Received</th><th scope="col">Applied</th><th scope="col">Failed</th><th scope="col">Lag</th><th scope="col">Dead letters</th><th scope="col">Last error</th><th scope="col" /></tr></thead>
          <tbody>{(sources || []).map((x) => {
            const s = x.status || {};
            return (
              <tr>
                <Cell v={x.name} /><Cell v={x.type || x.sourceType} /><Cell v={s.state} /><Cell v={s.received} /><Cell v={s.applied} />
                <Cell v={s.failed} /><Cell v={s.lag} /><Cell v={s.deadLetters} />
                <td class="error-text">{s.lastError || ''}</td>
                <td><button type="button" onClick={() => setDead({ kind: 'sources', name: x.name })}>Dead letters</button></td>
              </tr>
            );
          })}</tbody>
        </table>
      </section>
      <section aria-label="Mappings">
        <h2>Mappings</h2>
        {mapErr && <p role="alert" class="error">{mapErr}</p>}
        <table id="mapping-table">
          <thead><tr><th scope="col">Name</th><th scope="col">Source</th><th scope="col">Definition</th></tr></thead>
          <tbody>{(mappings || []).map((m) => (
            <tr><Cell v={m.name} /><Cell v={m.source} />
              <td><code>{JSON.stringify(Object.fromEntries(Object.entries(m).filter(([k]) => k !== 'name' && k !== 'source')))}</code></td></tr>
          ))}</tbody>
        </table>
        {mappings && mappings.length > 0 && <DryRun mappings={mappings} />}
      </section>
      {dead && <DeadLetters key={dead.kind + dead.name} kind={dead.kind} name={dead.name} onChanged={bump} />}
      <Tail />
    </div>
  );
}
