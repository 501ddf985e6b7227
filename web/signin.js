// signin.js: the sign-in of a daemon started with --token-file. The page asks for the token
// once and exchanges it (POST /api/v1/session) for a session cookie the page cannot read
// (HttpOnly); the browser then sends it with every request, event stream and download.
// Sign-out (DELETE /api/v1/session) ends the session on the daemon and drops the cookie.
import { h, mount } from './util.js';
import { get, request } from './api.js';
import { field, onSubmit, statusLine } from './forms.js';

// {token_required, signed_in}, or null when the daemon does not answer.
export async function sessionState() {
  try {
    return await get('/session');
  } catch {
    return null;
  }
}

// Shows the sign-in form in root and resolves once the daemon accepted the token. The
// token leaves the page only in that one request and is not kept anywhere.
export function signInPage(root) {
  return new Promise((resolve) => {
    const form = h('form', { class: 'card form signin', 'aria-labelledby': 'signin-h' },
      h('h2', { id: 'signin-h' }, 'Token'),
      field({ name: 'token', label: 'Token', type: 'password', required: true,
        hint: 'The line in the daemon\'s --token-file. Asked once: the browser then keeps a session cookie until you sign out or it expires.' }),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Sign in')),
      statusLine());
    onSubmit(form, async (f) => {
      const input = f.elements.token;
      const token = input.value;
      await request('POST', '/session', { token });
      input.value = '';
      resolve();
      return 'Signed in';
    });
    mount(root,
      h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, 'Sign in')),
      h('p', { class: 'muted' }, 'This daemon asks for its token before it shows or changes anything.'),
      form);
    form.elements.token.focus();
  });
}

// Ends the session on the daemon; the answer also deletes the cookie.
export async function signOut() {
  await request('DELETE', '/session');
}
