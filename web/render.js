// One render per animation frame: modules that change what is shown call scheduleRender(); the
// renderers registered with onRender() then run once, in the order they were registered.

const renderers = [];
let queued = false;

/** Adds fn to what runs at the next frame after a change. */
export function onRender(fn) {
  renderers.push(fn);
}

export function scheduleRender() {
  if (queued) return;
  queued = true;
  requestAnimationFrame(() => {
    queued = false;
    for (const fn of renderers) fn();
  });
}
