/**
 * The channel list page (/): shows the broadcasts live at this origin (/api/broadcasts),
 * each linking to its /watch/ page, refreshed every few seconds. Names are rendered as
 * text only.
 */

import { watchHref } from './location.js';

const list = document.getElementById('list');
const message = document.getElementById('message');

async function refresh() {
  try {
    const res = await fetch('/api/broadcasts', { cache: 'no-store' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const { broadcasts } = await res.json();
    const names = [...new Set(broadcasts)].filter((b) => typeof b === 'string').sort();
    message.textContent = names.length ? '' : 'Nobody is live right now.';
    list.replaceChildren(
      ...names.map((name) => {
        const li = document.createElement('li');
        const a = document.createElement('a');
        a.href = watchHref(name, location.search);
        a.textContent = name;
        li.append(a);
        return li;
      }),
    );
  } catch (err) {
    message.textContent = `Cannot load the channel list: ${err.message}`;
  }
}

refresh();
setInterval(refresh, 5000);
