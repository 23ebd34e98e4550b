// Small DOM helpers shared by the dashboard's modules.

export const byId = (id) => document.getElementById(id);

/** Sets el's text only when it differs (no needless layout or screen reader churn). */
export function setText(el, text) {
  const s = String(text);
  if (el.textContent !== s) el.textContent = s;
}

/* A table cell holding a number: data-value keeps the raw value, the text is formatted. */
export function setNumber(td, value, format, title) {
  const v = value === null || value === undefined || !Number.isFinite(value) ? '' : String(value);
  if (td.dataset.value !== v) td.dataset.value = v;
  setText(td, format(value));
  if (title !== undefined && td.title !== title) td.title = title;
}

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

/* Tab and Shift+Tab cycle through the open dialog's controls and never leave it. */
export function trapFocus(dialog) {
  dialog.addEventListener('keydown', (e) => {
    if (e.key !== 'Tab' || !dialog.open) return;
    const items = [...dialog.querySelectorAll(FOCUSABLE)].filter((el) => !el.closest('[hidden]') && el.getClientRects().length > 0);
    if (items.length === 0) return;
    const first = items[0];
    const last = items[items.length - 1];
    const at = document.activeElement;
    if (e.shiftKey && (at === first || !dialog.contains(at))) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && (at === last || !dialog.contains(at))) {
      e.preventDefault();
      first.focus();
    }
  });
}
