import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { onSignIn, setToken, token } from './api.js';
import { ModelsView } from './models.jsx';
import { GraphView } from './graph.jsx';
import { HistoryView } from './history.jsx';
import { FlowsView } from './flows.jsx';
import { DetectorsView } from './detectors.jsx';
import { TwinPanel } from './twin.jsx';
import 'uplot/dist/uPlot.min.css';
import './style.css';

const views = [
  ['graph', 'Graph'],
  ['models', 'Models'],
  ['history', 'History'],
  ['flows', 'Flows'],
  ['detectors', 'Detectors'],
];

/** route returns the view the location's hash names (#/graph, #/detectors?twin=...), graph
 *  by default. */
function route() {
  const name = location.hash.replace(/^#\/?/, '').split(/[/?]/)[0];
  return views.some(([v]) => v === name) ? name : 'graph';
}

/** SignIn is the dialog asking for an API key or bearer token when the server answers 401. */
function SignIn({ request, onDone }) {
  const ref = useRef();
  const [value, setValue] = useState('');
  useEffect(() => {
    const d = ref.current;
    if (request && !d.open) d.showModal();
    if (!request && d.open) d.close();
  }, [request]);
  const submit = (e) => {
    e.preventDefault();
    setToken(value);
    setValue('');
    onDone(true);
  };
  return (
    <dialog ref={ref} class="signin" aria-labelledby="signin-title" onCancel={(e) => { e.preventDefault(); onDone(false); }}>
      <form onSubmit={submit}>
        <h2 id="signin-title">Sign in</h2>
        <p role="alert">{request ? request.message : ''}</p>
        <label for="signin-token">API key or bearer token</label>
        <input id="signin-token" type="password" autocomplete="off" required value={value}
          onInput={(e) => setValue(e.currentTarget.value)} />
        <p class="hint">Kept in this tab only (sessionStorage).</p>
        <div class="row">
          <button type="submit">Sign in</button>
          <button type="button" onClick={() => onDone(false)}>Cancel</button>
        </div>
      </form>
    </dialog>
  );
}

function App() {
  const [view, setView] = useState(route());
  const [selected, setSelected] = useState([]); // twin ids selected in the graph
  const [panelTwin, setPanelTwin] = useState(null);
  const [signin, setSignin] = useState(null);
  const [version, setVersion] = useState(0); // bumped when a change may alter what views show

  useEffect(() => {
    const onHash = () => setView(route());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);
  useEffect(() => {
    // Requests that meet a 401 wait on one dialog together.
    let pending = null;
    onSignIn((message) => {
      if (!pending) {
        pending = new Promise((resolve) => setSignin({ message, resolve }));
        pending.finally(() => { pending = null; });
      }
      return pending;
    });
  }, []);
  const done = (ok) => {
    if (signin) signin.resolve(ok);
    setSignin(null);
  };
  const select = (ids) => {
    setSelected(ids);
    setPanelTwin(ids.length ? ids[ids.length - 1] : null);
  };

  return (
    <div class="app">
      <header>
        <h1>twinflow</h1>
        <nav aria-label="Views">
          {views.map(([v, label]) => (
            <a href={'#/' + v} aria-current={view === v ? 'page' : undefined}>{label}</a>
          ))}
        </nav>
        <span class="spacer" />
        {token() ? <button type="button" onClick={() => { setToken(''); location.reload(); }}>Sign out</button> : null}
      </header>
      <div class="body">
        <main id="main">
          {/* The graph stays mounted, so that its result outlives a visit to another view. */}
          <div hidden={view !== 'graph'}><GraphView active={view === 'graph'} selected={selected} onSelect={select} version={version} /></div>
          {view === 'models' && <ModelsView version={version} onChanged={() => setVersion(version + 1)} />}
          {view === 'history' && <HistoryView selected={selected} />}
          {view === 'flows' && <FlowsView />}
          {view === 'detectors' && <DetectorsView key={location.hash} />}
        </main>
        {panelTwin && (view === 'graph' || view === 'history') && (
          <TwinPanel id={panelTwin} key={panelTwin + ':' + version}
            onClose={() => setPanelTwin(null)}
            onChanged={() => setVersion(version + 1)}
            onDeleted={() => { select([]); setVersion(version + 1); }} />
        )}
      </div>
      <SignIn request={signin} onDone={done} />
    </div>
  );
}

const root = document.getElementById('app');
root.textContent = '';
render(<App />, root);
performance.mark('twinflow-app-rendered');
