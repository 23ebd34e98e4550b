// The access token: a daemon started with --token-file answers 401 without it. The dialog asks
// for it (checked against the daemon before it is kept for the tab); after the user declined,
// a 401 no longer opens the dialog by itself (polling would open it every 2 s): the bar at the
// bottom offers it instead.

import { checkToken, setToken } from './api.js';
import { byId } from './dom.js';

let tokenDeclined = false;

/** Shows or hides the bar that offers the token dialog. */
export function showAuthNeeded(show) {
  byId('auth-needed').hidden = !show;
}

function setTokenError(text) {
  const error = byId('token-error');
  const input = byId('token-input');
  error.textContent = text || '';
  error.hidden = !text;
  input.setAttribute('aria-invalid', text ? 'true' : 'false');
  if (text) {
    input.focus();
    input.select();
  }
}

/**
 * Opens the token dialog; resolves to true once the daemon accepted a token (it is then kept
 * for this tab), false when the user cancels (the button, Escape).
 */
export function openTokenDialog(reason) {
  const d = byId('token-dialog');
  const form = byId('token-form');
  const input = byId('token-input');
  const submit = byId('token-submit');
  const cancel = byId('token-cancel');
  const returnTo = document.activeElement;
  tokenDeclined = false;
  showAuthNeeded(false);
  byId('token-text').textContent = reason === 'refused'
    ? 'The daemon refused the token this tab was using (it may have been restarted with another). Enter the current token.'
    : 'This daemon asks for an access token (it was started with --token-file). Enter the token from that file: this tab keeps it until it is closed.';
  input.value = '';
  setTokenError('');
  return new Promise((resolve) => {
    let busy = false;
    const finish = (ok) => {
      form.onsubmit = null;
      cancel.onclick = null;
      d.onclose = null;
      if (d.open) d.close();
      if (returnTo && returnTo !== document.body && document.contains(returnTo)) returnTo.focus();
      tokenDeclined = !ok;
      showAuthNeeded(!ok);
      resolve(ok);
    };
    form.onsubmit = async (e) => {
      e.preventDefault();
      if (busy) return;
      const token = input.value.trim();
      if (!token) {
        setTokenError('Enter the token.');
        return;
      }
      if (/[^\x21-\x7e]/.test(token)) {
        setTokenError('A token is made of visible ASCII characters, without blanks.');
        return;
      }
      busy = true;
      submit.disabled = true;
      const verdict = await checkToken(token);
      busy = false;
      submit.disabled = false;
      if (verdict === 'ok') {
        setToken(token);
        finish(true);
      } else if (verdict === 'refused') {
        setTokenError('The daemon refused this token. Check it and try again.');
      } else {
        setTokenError('The daemon cannot be reached. Try again once it is back.');
      }
    };
    cancel.onclick = () => finish(false);
    d.onclose = () => finish(false);
    d.showModal();
    input.focus();
  });
}

/** The API's answer to a 401 (see api.js): forget a refused token, ask for one. */
export function askToken(reason) {
  if (reason === 'refused') setToken(null);
  if (tokenDeclined) {
    showAuthNeeded(true);
    return Promise.resolve(false);
  }
  return openTokenDialog(reason);
}
