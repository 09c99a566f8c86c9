import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, describe, enc, listAll, ApiError } from './api.js';
import { asList, kindOf, schemaText } from './dtdl.js';
import { orderModels, parseModelFile } from './order.js';

/** loadModels returns every model with its definition. */
export async function loadModels() {
  return listAll('/models?includeModelDefinition=true');
}

/** Tree renders the models as a tree by extends. */
function Tree({ models, selected, onSelect }) {
  const { roots, children } = useMemo(() => {
    const ids = new Set(models.map((m) => m.id));
    const children = new Map();
    const roots = [];
    for (const m of models) {
      const parents = asList(m.model && m.model.extends).filter((e) => typeof e === 'string' && ids.has(e));
      if (!parents.length) roots.push(m);
      for (const p of parents) {
        if (!children.has(p)) children.set(p, []);
        children.get(p).push(m);
      }
    }
    const byId = (a, b) => a.id.localeCompare(b.id);
    roots.sort(byId);
    for (const c of children.values()) c.sort(byId);
    return { roots, children };
  }, [models]);
  const node = (m, depth) => (
    <li role="treeitem" aria-level={depth} aria-selected={selected === m.id}>
      <button type="button" class={'tree-item' + (m.decommissioned ? ' decommissioned' : '')}
        onClick={() => onSelect(m.id)}>
        {m.displayName && typeof m.displayName === 'object' ? (m.displayName.en || Object.values(m.displayName)[0]) : m.id}
        <small>{m.id}{m.decommissioned ? ' (decommissioned)' : ''}</small>
      </button>
      {children.has(m.id) && <ul role="group">{children.get(m.id).map((c) => node(c, depth + 1))}</ul>}
    </li>
  );
  return <ul class="tree" role="tree" aria-label="Models by extends">{roots.map((m) => node(m, 1))}</ul>;
}

/** Contents renders one interface's contents. */
function Contents({ model, onChanged, onError }) {
  const def = model.model || {};
  const contents = asList(def.contents);
  const [confirm, setConfirm] = useState(false);
  const decommission = async () => {
    try {
      await api('PATCH', `/models/${enc(model.id)}`, {
        body: [{ op: 'replace', path: '/decommissioned', value: true }],
        headers: { 'Content-Type': 'application/json-patch+json' },
      });
      onChanged();
    } catch (e) {
      onError(`Decommission ${model.id}: ${describe(e)}`);
    }
  };
  const remove = async () => {
    try {
      await api('DELETE', `/models/${enc(model.id)}`);
      onChanged(null);
    } catch (e) {
      onError(`Delete ${model.id}: ${describe(e)}`);
    }
    setConfirm(false);
  };
  return (
    <section class="model-detail" aria-label={'Model ' + model.id}>
      <h2>{model.id}</h2>
      <p>
        {asList(def.extends).length ? <>extends {asList(def.extends).map((e) => (typeof e === 'string' ? e : e['@id'] || 'an inline interface')).join(', ')}. </> : null}
        Uploaded {model.uploadTime || ''}{model.decommissioned ? '; decommissioned' : ''}.
      </p>
      <div class="row">
        {!model.decommissioned && <button type="button" onClick={decommission}>Decommission</button>}
        {confirm ? (
          <>
            <button type="button" class="danger" onClick={remove}>Really delete {model.id}</button>
            <button type="button" onClick={() => setConfirm(false)}>Keep it</button>
          </>
        ) : <button type="button" class="danger" onClick={() => setConfirm(true)}>Delete</button>}
      </div>
      <table class="contents">
        <caption>Contents</caption>
        <thead><tr><th scope="col">Kind</th><th scope="col">Name</th><th scope="col">Schema / target</th><th scope="col">Writable</th></tr></thead>
        <tbody>
          {contents.map((c) => {
            const kind = kindOf(c);
            let schema = schemaText(c.schema);
            if (kind === 'Relationship') {
              schema = `→ ${c.target || 'any twin'}`;
              const props = asList(c.properties);
              if (props.length) schema += ` {${props.map((p) => `${p.name}: ${schemaText(p.schema)}`).join(', ')}}`;
            }
            return (
              <tr>
                <td>{asList(c['@type']).join(', ')}</td>
                <td>{c.name}</td>
                <td><code>{schema}</code></td>
                <td>{kind === 'Property' ? (c.writable ? 'yes' : 'no') : ''}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </section>
  );
}

/** readFiles reads model files: {models, errors}, each model remembering its file. */
async function readFiles(files) {
  const models = [];
  const errors = [];
  for (const f of files) {
    if (!/\.json$/i.test(f.name)) continue;
    const name = f.webkitRelativePath || f.name;
    try {
      for (const m of parseModelFile(await f.text())) models.push({ file: name, model: m });
    } catch (e) {
      errors.push(`${name}: ${e.message}`);
    }
  }
  return { models, errors };
}

/** Upload reads files or a folder and uploads their models in dependency order. */
function Upload({ onDone }) {
  const [busy, setBusy] = useState(false);
  const [report, setReport] = useState(null);
  const upload = async (files) => {
    setBusy(true);
    setReport(null);
    const { models, errors } = await readFiles(files);
    if (errors.length) {
      setReport({ ok: false, lines: ['These files are not DTDL JSON; nothing was uploaded:', ...errors] });
      setBusy(false);
      return;
    }
    const fileOf = new Map(models.map((m) => [m.model['@id'], m.file]));
    let batches;
    try {
      batches = orderModels(models.map((m) => m.model));
    } catch (e) {
      setReport({ ok: false, lines: [e.message] });
      setBusy(false);
      return;
    }
    let sent = 0;
    for (const [i, batch] of batches.entries()) {
      try {
        await api('POST', '/models', { body: batch });
        sent += batch.length;
      } catch (e) {
        const lines = [`Batch ${i + 1} of ${batches.length} was refused; ${sent} models were uploaded before it.`, describe(e)];
        const text = e instanceof ApiError ? [e.message, ...e.details].join('\n') : String(e);
        for (const m of batch) {
          if (text.includes(m['@id'])) lines.push(`${m['@id']} is in ${fileOf.get(m['@id'])}`);
        }
        setReport({ ok: false, lines });
        setBusy(false);
        onDone();
        return;
      }
    }
    setReport({ ok: true, lines: [`Uploaded ${sent} models in ${batches.length} batch${batches.length === 1 ? '' : 'es'}.`] });
    setBusy(false);
    onDone();
  };
  const pick = (e) => {
    const files = [...e.currentTarget.files];
    e.currentTarget.value = '';
    if (files.length) upload(files);
  };
  return (
    <section class="upload" aria-label="Upload models">
      <div class="row">
        <label class="file">Upload files
          <input id="model-files" type="file" multiple accept=".json,application/json" onChange={pick} disabled={busy} />
        </label>
        <label class="file">Upload a folder
          <input id="model-folder" type="file" multiple webkitdirectory onChange={pick} disabled={busy} />
        </label>
        {busy && <span role="status">Uploading…</span>}
      </div>
      {report && (
        <div id="upload-report" role={report.ok ? 'status' : 'alert'} class={report.ok ? 'ok' : 'error'}>
          {report.lines.map((l) => <pre>{l}</pre>)}
        </div>
      )}
    </section>
  );
}

/** ModelsView lists the models as a tree by extends, shows one's contents, uploads files or
 *  folders of models, decommissions and deletes. */
export function ModelsView({ version, onChanged }) {
  const [models, setModels] = useState(null);
  const [selected, setSelected] = useState(null);
  const [error, setError] = useState('');
  const [reload, setReload] = useState(0);
  useEffect(() => {
    loadModels().then(setModels, (e) => setError(describe(e)));
  }, [version, reload]);
  const changed = () => {
    setReload(reload + 1);
    onChanged();
  };
  const model = models && models.find((m) => m.id === selected);
  return (
    <div class="models">
      <Upload onDone={changed} />
      {error && <p role="alert" class="error">{error}</p>}
      <div class="split">
        <div class="pane">
          <h2>Models <small id="model-count">{models ? models.length : '…'}</small></h2>
          {models && <Tree models={models} selected={selected} onSelect={setSelected} />}
        </div>
        <div class="pane">
          {model ? <Contents model={model} onChanged={(keep) => { if (keep === null) setSelected(null); changed(); }} onError={setError} />
            : <p>Select a model to see its contents.</p>}
        </div>
      </div>
    </div>
  );
}
