// live.js: one run's Server-Sent Events stream. Events only say *what* changed; the page
// then fetches the new rows from the API (incrementally, after the last step it holds), so
// a dropped connection loses nothing: on reconnect everything is marked changed and caught
// up. Redraws are throttled by the caller.

// What each SSE event type makes stale. Unknown types mark everything stale.
const TOPICS = {
  metric: ['metrics'], metrics: ['metrics'], batch: ['metrics'],
  sweep_point: ['lrfind'], lr_find: ['lrfind'], lrfind: ['lrfind'], sweep: ['lrfind'],
  epoch: ['epochs', 'metrics', 'run'], cycle_end: ['epochs', 'metrics'],
  job: ['run', 'jobs'], progress: ['run', 'jobs'],
  note: ['notes'], run: ['run'],
};
const ALL = ['metrics', 'lrfind', 'epochs', 'run', 'jobs'];

// Opens the stream at url and calls onStale(set of topics) for every event, and
// onStatus(text) when the connection state changes. Returns {close, stats}.
export function subscribe(url, onStale, onStatus) {
  const stats = { events: 0, opens: 0, errors: 0, lastId: null };
  let es = null;
  let retry = null;
  let closed = false;
  let backoff = 1000;

  const handle = (type, ev) => {
    stats.events++;
    if (ev.lastEventId) stats.lastId = ev.lastEventId;
    onStale(new Set(TOPICS[type] || ALL), type, ev.data);
  };

  const open = () => {
    if (closed) return;
    // EventSource resends Last-Event-ID itself when it reconnects; a stream opened anew by
    // us after the browser gave up resumes through the query parameter instead.
    const resume = stats.lastId ? `${url.includes('?') ? '&' : '?'}last_event_id=${encodeURIComponent(stats.lastId)}` : '';
    es = new EventSource(url + resume);
    es.onopen = () => {
      stats.opens++;
      backoff = 1000;
      onStatus('live');
      // The first open loads everything anyway; a re-open catches up on what was missed.
      if (stats.opens > 1) onStale(new Set(ALL), 'reconnect', null);
    };
    es.onmessage = (ev) => handle('message', ev);
    for (const t of Object.keys(TOPICS)) es.addEventListener(t, (ev) => handle(t, ev));
    es.onerror = () => {
      stats.errors++;
      if (closed) return;
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. the daemon restarted and refused once): retry ourselves.
        onStatus('reconnecting');
        es.close();
        retry = setTimeout(open, backoff);
        backoff = Math.min(backoff * 2, 15000);
      } else {
        onStatus('reconnecting');
      }
    };
  };
  open();

  return {
    stats,
    close() {
      closed = true;
      clearTimeout(retry);
      if (es) es.close();
    },
  };
}
