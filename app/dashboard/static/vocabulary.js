/*
 * The service's vocabulary as its OpenAPI document states it (defined once on the server, in
 * dlcprune.names and dlcprune.core.params): the strategies and selection defaults for the
 * builder; the models, bounds and choices for the job form. The document is read once per page.
 */

// How the page names the values it knows; which values there are comes from the service, so a
// new one appears under its own name.
export const STRATEGY_LABELS = {
  flexrand: "FlexRand (easy/hard mix)",
  easy: "Easiest first",
  hard: "Hardest first",
  random: "Random",
  stratified: "Stratified random",
  ccs: "Coverage-centric (CCS)",
};
export const MASKING_LABELS = { l1: "l1 (smallest first)", random: "random" };

let documentRead = null;

/** /openapi.json, fetched once (it needs no key); a failed read is tried again next time. */
function openapi() {
  if (!documentRead) {
    documentRead = fetch("openapi.json").then((resp) => {
      if (!resp.ok) throw new Error(`openapi.json: ${resp.status} ${resp.statusText}`);
      return resp.json();
    });
    documentRead.catch(() => { documentRead = null; });
  }
  return documentRead;
}

/** A property's schema without its "or null" (anyOf [schema, {type: "null"}]). */
function nonNull(prop) {
  if (!prop.anyOf) return prop;
  return prop.anyOf.find((s) => s.type !== "null") || prop;
}

/** The strategy names and the selection defaults (SelectionCreate). */
export async function selectionVocabulary() {
  const props = (await openapi()).components.schemas.SelectionCreate.properties;
  return {
    strategies: props.strategy.enum,
    strategy: props.strategy.default,
    split: props.split.default,
  };
}

/** The job form's choices (JobCreate and DLCParamsIn): the default model; the models served
 * without weights, as JobCreate's examples name them (those without weights_id or an
 * architecture prefix), and the one to suggest per data kind; the image size and levels bounds;
 * the schedules and maskings with the masking default. */
export async function jobVocabulary() {
  const schemas = (await openapi()).components.schemas;
  const create = schemas.JobCreate;
  const params = schemas.DLCParamsIn.properties;
  const model = create.properties.model.default;
  const models = [model];
  for (const ex of create.examples || []) {
    if (ex.model && !ex.weights_id && !ex.model.includes(":") && !models.includes(ex.model)) {
      models.push(ex.model);
    }
  }
  const bounds = (prop) => ({ min: nonNull(prop).minimum, max: nonNull(prop).maximum });
  return {
    model,
    models,
    // Images: the default; text: the other model served without weights (a text encoder).
    modelFor: { image: model, text: models.find((m) => m !== model) },
    imageSize: bounds(params.image_size),
    levels: bounds(params.levels),
    schedules: nonNull(params.schedule).enum,
    maskings: params.masking.enum,
    masking: params.masking.default,
  };
}
