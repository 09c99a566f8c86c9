import { useEffect, useState } from 'preact/hooks';
import { api, describe, enc, listAll, request, ApiError } from './api.js';
import { asList, kindOf, parseValue, resolvedContents, schemaText, valueText } from './dtdl.js';
import { loadModels } from './models.jsx';
import { TwinAnomalies } from './detectors.jsx';

/** modelMap loads every model into a Map of id to definition. */
async function modelMap() {
  const list = await loadModels();
  return new Map(list.map((m) => [m.id, m.model]));
}

/** Field is one editable value: Enter or Save sends it, Escape puts it back. */
function Field({ id, label, schema, value, onSave }) {
  const [text, setText] = useState(valueText(value));
  const [err, setErr] = useState('');
  useEffect(() => setText(valueText(value)), [value]);
  const save = async () => {
    let v;
    try {
      v = parseValue(schema, text);
    } catch (e) {
      setErr(e.message);
      return;
    }
    setErr('');
    await onSave(v);
  };
  const dirty = text !== valueText(value);
  return (
    <div class="field">
      <label for={id}>{label} <small>{schemaText(schema)}</small></label>
      <div class="row">
        <input id={id} value={text} aria-invalid={err ? 'true' : undefined}
          onInput={(e) => setText(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter') { e.preventDefault(); save(); }
            if (e.key === 'Escape') { setText(valueText(value)); setErr(''); }
          }} />
        <button type="button" onClick={save} disabled={!dirty} aria-label={'Save ' + label}>Save</button>
      </div>
      {err && <p class="error" role="alert">{err}</p>}
    </div>
  );
}

/** TwinPanel shows one twin's properties and components with their DTDL types, edits them
 *  with JSON Patch under If-Match, lists the latest anomalies raised on it, and lists,
 *  creates and deletes its relationships. */
export function TwinPanel({ id, onClose, onChanged, onDeleted }) {
  const [twin, setTwin] = useState(null);
  const [etag, setEtag] = useState('');
  const [models, setModels] = useState(new Map());
  const [rels, setRels] = useState([]);
  const [error, setError] = useState('');
  const [conflict, setConflict] = useState(false);
  const [notice, setNotice] = useState('');
  const [confirm, setConfirm] = useState(false);

  const load = async () => {
    setError('');
    setConflict(false);
    try {
      const [res, ms, rs] = await Promise.all([
        request('GET', `/digitaltwins/${enc(id)}`), modelMap(), listAll(`/digitaltwins/${enc(id)}/relationships`)]);
      setTwin(res.data);
      setEtag(res.headers.get('ETag') || res.data.$etag);
      setModels(ms);
      setRels(rs);
    } catch (e) {
      setError(describe(e));
    }
  };
  useEffect(() => { load(); }, [id]);

  const patch = async (path, value, present) => {
    setNotice('');
    try {
      const res = await request('PATCH', `/digitaltwins/${enc(id)}`, {
        body: [{ op: present ? 'replace' : 'add', path, value }],
        headers: { 'Content-Type': 'application/json-patch+json', 'If-Match': etag },
      });
      const fresh = await request('GET', `/digitaltwins/${enc(id)}`);
      setTwin(fresh.data);
      setEtag(fresh.headers.get('ETag') || res.headers.get('ETag'));
      setNotice(`Saved ${path}.`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 412) setConflict(true);
      else setError(describe(e));
    }
  };
  const remove = async () => {
    try {
      for (const r of rels) await api('DELETE', `/digitaltwins/${enc(id)}/relationships/${enc(r.$relationshipId)}`);
      await api('DELETE', `/digitaltwins/${enc(id)}`);
      onDeleted();
    } catch (e) {
      setError(describe(e));
    }
  };
  const removeRel = async (r) => {
    try {
      await api('DELETE', `/digitaltwins/${enc(id)}/relationships/${enc(r.$relationshipId)}`);
      setRels(rels.filter((x) => x !== r));
      onChanged();
    } catch (e) {
      setError(describe(e));
    }
  };

  const model = twin && twin.$metadata && twin.$metadata.$model;
  const contents = model ? resolvedContents(model, models) : [];
  const props = contents.filter((c) => kindOf(c) === 'Property');
  const comps = contents.filter((c) => kindOf(c) === 'Component');
  const relDefs = contents.filter((c) => kindOf(c) === 'Relationship');
  return (
    <aside class="twin-panel" aria-label={'Twin ' + id}>
      <div class="row">
        <h2 id="twin-title">{id}</h2>
        <span class="spacer" />
        <button type="button" onClick={onClose} aria-label="Close the twin panel">×</button>
      </div>
      {twin && <p><small>{model} · ETag <code id="twin-etag">{etag}</code></small></p>}
      {conflict && (
        <div id="conflict" role="alert" class="error">
          <p>Conflict (412): this twin was changed by someone else since it was loaded, so your change was not applied.</p>
          <button type="button" onClick={load}>Reload the twin</button>
        </div>
      )}
      {error && <p role="alert" class="error">{error}</p>}
      {notice && <p role="status" class="ok">{notice}</p>}
      {twin && (
        <>
          <h3>Properties</h3>
          {props.map((p) => (
            <Field id={'prop-' + p.name} label={p.name} schema={p.schema} value={twin[p.name]}
              onSave={(v) => patch('/' + p.name, v, p.name in twin)} />
          ))}
          {comps.map((c) => {
            const schema = typeof c.schema === 'string' ? models.get(c.schema) : c.schema;
            const cprops = schema ? asList(schema.contents).filter((x) => kindOf(x) === 'Property') : [];
            const value = twin[c.name] || {};
            return (
              <fieldset class="component">
                <legend>Component {c.name} <small>{typeof c.schema === 'string' ? c.schema : ''}</small></legend>
                {cprops.map((p) => (
                  <Field id={`prop-${c.name}-${p.name}`} label={p.name} schema={p.schema} value={value[p.name]}
                    onSave={(v) => patch(`/${c.name}/${p.name}`, v, p.name in value)} />
                ))}
              </fieldset>
            );
          })}
          <TwinAnomalies id={id} />
          <h3>Relationships</h3>
          <ul class="rels">
            {rels.map((r) => (
              <li>{r.$relationshipName} → {r.$targetId} <small>({r.$relationshipId})</small>{' '}
                <button type="button" class="danger" onClick={() => removeRel(r)} aria-label={'Delete relationship ' + r.$relationshipId}>Delete</button></li>
            ))}
          </ul>
          <CreateRelationship source={id} defs={relDefs} onCreated={(r) => { setRels([...rels, r]); onChanged(); }} />
          <div class="row">
            {confirm ? (
              <>
                <button type="button" class="danger" onClick={remove}>Really delete {id} and its relationships</button>
                <button type="button" onClick={() => setConfirm(false)}>Keep it</button>
              </>
            ) : <button type="button" class="danger" onClick={() => setConfirm(true)}>Delete twin</button>}
          </div>
        </>
      )}
    </aside>
  );
}

/** CreateRelationship creates a relationship from source. */
function CreateRelationship({ source, defs, onCreated }) {
  const [name, setName] = useState(defs.length ? defs[0].name : '');
  const [target, setTarget] = useState('');
  const [relId, setRelId] = useState('');
  const [error, setError] = useState('');
  useEffect(() => { if (!name && defs.length) setName(defs[0].name); }, [defs]);
  const submit = async (e) => {
    e.preventDefault();
    setError('');
    const rid = relId || `${source}-${name}-${target}`;
    try {
      const r = await api('PUT', `/digitaltwins/${enc(source)}/relationships/${enc(rid)}`, {
        body: { $targetId: target, $relationshipName: name }, headers: { 'If-None-Match': '*' } });
      setTarget('');
      setRelId('');
      onCreated(r);
    } catch (err) {
      setError(describe(err));
    }
  };
  return (
    <form class="create-rel" onSubmit={submit} aria-label="New relationship">
      <h3>New relationship</h3>
      <label>Name <select id="rel-name" value={name} onChange={(e) => setName(e.currentTarget.value)} required>
        {defs.map((d) => <option value={d.name}>{d.name}{d.target ? ' → ' + d.target : ''}</option>)}
      </select></label>
      <label>Target twin <input id="rel-target" value={target} onInput={(e) => setTarget(e.currentTarget.value)} required /></label>
      <label>Id <input id="rel-id" value={relId} placeholder={`${source}-${name}-${target || '…'}`} onInput={(e) => setRelId(e.currentTarget.value)} /></label>
      <button type="submit" id="create-rel">Create relationship</button>
      {error && <p role="alert" class="error">{error}</p>}
    </form>
  );
}

/** CreateTwin creates a twin of a chosen model with initial properties. */
export function CreateTwin({ onDone }) {
  const [models, setModels] = useState([]);
  const [model, setModel] = useState('');
  const [id, setId] = useState('');
  const [props, setProps] = useState('{}');
  const [error, setError] = useState('');
  const [notice, setNotice] = useState('');
  useEffect(() => {
    loadModels().then((ms) => {
      const live = ms.filter((m) => !m.decommissioned).map((m) => m.id).sort();
      setModels(live);
      if (live.length) setModel(live[0]);
    }, (e) => setError(describe(e)));
  }, []);
  const submit = async (e) => {
    e.preventDefault();
    setError('');
    setNotice('');
    let body;
    try {
      body = JSON.parse(props || '{}');
    } catch (err) {
      setError('The properties are not JSON: ' + err.message);
      return;
    }
    body.$metadata = { ...(body.$metadata || {}), $model: model };
    try {
      await api('PUT', `/digitaltwins/${enc(id)}`, { body, headers: { 'If-None-Match': '*' } });
      setNotice(`Created ${id}.`);
      setId('');
    } catch (err) {
      setError(describe(err));
    }
  };
  return (
    <form class="create-twin" onSubmit={submit} aria-label="New twin">
      <label>Id <input id="twin-id" value={id} onInput={(e) => setId(e.currentTarget.value)} required /></label>
      <label>Model <select id="twin-model" value={model} onChange={(e) => setModel(e.currentTarget.value)}>
        {models.map((m) => <option value={m}>{m}</option>)}</select></label>
      <label>Properties (JSON) <input id="twin-props" value={props} onInput={(e) => setProps(e.currentTarget.value)} /></label>
      <button type="submit" id="create-twin">Create twin</button>
      <button type="button" onClick={onDone}>Close</button>
      {error && <p role="alert" class="error">{error}</p>}
      {notice && <p role="status" class="ok" id="create-twin-status">{notice}</p>}
    </form>
  );
}
