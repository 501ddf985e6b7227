"""sse_client.py: a minimal Server-Sent Events reader over http.client, for the tests."""
import json
import threading


class SSE:
    """Reads GET /runs/{id}/events in a thread; events (dicts with id, event, data) and
    comments pile up in lists the test can inspect."""

    def __init__(self, daemon, run_id, last_event_id=None, timeout=60):
        self.conn = daemon.connect(timeout=timeout)
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        if daemon.token:
            headers["Authorization"] = "Bearer " + daemon.token
        self.conn.request("GET", "/api/v1/runs/%d/events" % run_id, headers=headers)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.ctype = self.resp.getheader("Content-Type", "")
        self.events, self.comments, self.retry = [], [], None
        self.error = None
        self.cv = threading.Condition()
        self.thread = None
        if self.status == 200:
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()

    def _read(self):
        cur = {}
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                line = line.decode("utf-8").rstrip("\n").rstrip("\r")
                if line == "":
                    if "data" in cur:
                        cur["data"] = json.loads(cur["data"])
                        with self.cv:
                            self.events.append(cur)
                            self.cv.notify_all()
                    cur = {}
                    continue
                if line.startswith(":"):
                    with self.cv:
                        self.comments.append(line[1:].strip())
                        self.cv.notify_all()
                    continue
                key, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if key == "id":
                    cur["id"] = int(value)
                elif key == "event":
                    cur["event"] = value
                elif key == "data":
                    cur["data"] = cur.get("data", "") + value
                elif key == "retry":
                    self.retry = int(value)
        except Exception as e:  # the test closed the connection, or the daemon stopped
            self.error = e
        with self.cv:
            self.cv.notify_all()

    def wait_for(self, pred, timeout=60):
        """Waits until pred(events, comments) is true; returns it or raises."""
        with self.cv:
            ok = self.cv.wait_for(lambda: pred(self.events, self.comments), timeout)
        if not ok:
            raise AssertionError("SSE condition not met within %s s; events=%r comments=%r"
                                 % (timeout, self.events[-5:], self.comments[-5:]))
        return ok

    def close(self):
        try:
            self.resp.fp and self.resp.fp.raw._sock.shutdown(2)
        except Exception:
            pass
        self.conn.close()
