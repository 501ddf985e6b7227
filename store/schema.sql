-- schema.sql: the sgdrd SQLite schema, as numbered migrations. migrate.c applies every
-- section whose number is above the database's PRAGMA user_version, each in one
-- transaction, then sets user_version to that number. Never edit a released section;
-- add a new one. Times are Unix seconds (REAL). JSON columns hold compact JSON text.

-- version 1
CREATE TABLE datasets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    path        TEXT NOT NULL,
    format      TEXT NOT NULL CHECK (format IN ('folders', 'csv', 'idx')),
    options     TEXT NOT NULL DEFAULT '{}',
    info        TEXT NOT NULL DEFAULT '{}',
    uploaded    INTEGER NOT NULL DEFAULT 0,
    created_at  REAL NOT NULL
);

CREATE TABLE models (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    arch        TEXT NOT NULL,
    path        TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    info        TEXT NOT NULL DEFAULT '{}',
    created_at  REAL NOT NULL
);

CREATE TABLE runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset_id  INTEGER NOT NULL REFERENCES datasets(id) ON DELETE RESTRICT,
    model_id    INTEGER REFERENCES models(id) ON DELETE RESTRICT,
    arch        TEXT NOT NULL,
    config      TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT '{}',
    created_at  REAL NOT NULL
);
CREATE INDEX runs_dataset ON runs(dataset_id);
CREATE INDEX runs_model ON runs(model_id);

CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('lr_find', 'fit', 'freeze', 'unfreeze',
                    'precompute', 'resize', 'tta', 'recipe', 'predict_test')),
    state       TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed',
                    'cancelled', 'interrupted')),
    params      TEXT NOT NULL DEFAULT '{}',
    progress    REAL NOT NULL DEFAULT 0,
    eta_s       REAL,
    error       TEXT,
    result      TEXT,
    created_at  REAL NOT NULL,
    started_at  REAL,
    finished_at REAL
);
CREATE INDEX jobs_run ON jobs(run_id, id);
CREATE INDEX jobs_state ON jobs(state, id);

CREATE TABLE lr_finds (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id        INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    job_id        INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    start_lr      REAL NOT NULL,
    end_lr        REAL NOT NULL,
    num_it        INTEGER NOT NULL,
    suggestions   TEXT,
    stopped_early INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL,
    finished_at   REAL
);
CREATE INDEX lr_finds_run ON lr_finds(run_id, id);
CREATE INDEX lr_finds_job ON lr_finds(job_id);

CREATE TABLE lr_find_points (
    lr_find_id  INTEGER NOT NULL REFERENCES lr_finds(id) ON DELETE CASCADE,
    iter        INTEGER NOT NULL,
    lr          REAL NOT NULL,
    loss        REAL,
    smooth_loss REAL,
    PRIMARY KEY (lr_find_id, iter)
) WITHOUT ROWID;

-- One row per (run, key, step). A resumed fit that repeats steps replaces them.
CREATE TABLE metrics (
    run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key     TEXT NOT NULL,
    step    INTEGER NOT NULL,
    job_id  INTEGER REFERENCES jobs(id) ON DELETE CASCADE,
    value   REAL,
    time    REAL NOT NULL,
    PRIMARY KEY (run_id, key, step)
) WITHOUT ROWID;
CREATE INDEX metrics_step ON metrics(run_id, step);
CREATE INDEX metrics_job ON metrics(job_id);

CREATE TABLE epochs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    job_id      INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    epoch       INTEGER NOT NULL,
    fit_epoch   INTEGER NOT NULL,
    cycle       INTEGER NOT NULL,
    train_loss  REAL,
    valid_loss  REAL,
    accuracy    REAL,
    f2          REAL,
    seconds     REAL,
    img_per_s   REAL,
    time        REAL NOT NULL
);
CREATE INDEX epochs_run ON epochs(run_id, epoch);
CREATE INDEX epochs_job ON epochs(job_id);

CREATE TABLE snapshots (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    job_id      INTEGER REFERENCES jobs(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('snapshot', 'checkpoint', 'best', 'final')),
    cycle       INTEGER,
    epoch       INTEGER,
    path        TEXT NOT NULL,
    created_at  REAL NOT NULL
);
CREATE INDEX snapshots_run ON snapshots(run_id, id);
CREATE INDEX snapshots_job ON snapshots(job_id);

-- version 2
-- Live events (SSE): every metric step, sweep point, epoch and job change, replayable by
-- id for Last-Event-ID. Predictions files of predict_test jobs. Jobs remember the
-- interrupted job they resume.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    job_id      INTEGER,
    kind        TEXT NOT NULL,
    data        TEXT NOT NULL,
    time        REAL NOT NULL
);
CREATE INDEX events_run ON events(run_id, id);

CREATE TABLE predictions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    job_id      INTEGER NOT NULL UNIQUE REFERENCES jobs(id) ON DELETE CASCADE,
    path        TEXT NOT NULL,
    n_rows      INTEGER NOT NULL,
    created_at  REAL NOT NULL
);

ALTER TABLE jobs ADD COLUMN resumed_from INTEGER REFERENCES jobs(id) ON DELETE SET NULL;

-- version 3
-- An epoch row remembers the global iteration of its last batch, so that charts place its
-- validation point exactly instead of matching times. NULL in rows from before.
ALTER TABLE epochs ADD COLUMN step INTEGER;

-- version 4
-- The interpretation of a run's weights on its validation split (confusion matrix,
-- per-class metrics, confused pairs: summary; every judged item, highest loss first:
-- items), one per run, with the identity of the weights it was computed from so that it
-- is computed again only when they change.
CREATE TABLE interpretations (
    run_id      INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    job_id      INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
    weights     TEXT NOT NULL,
    summary     TEXT NOT NULL,
    items       TEXT NOT NULL,
    created_at  REAL NOT NULL
);

-- version 5
-- A dataset's folder is scanned after its row exists: "scanning" (progress: files seen so
-- far), then "ready" with the scan in info, or "failed" with the reason in error. Rows from
-- before were scanned before they were stored: ready.
ALTER TABLE datasets ADD COLUMN state TEXT NOT NULL DEFAULT 'ready'
    CHECK (state IN ('scanning', 'ready', 'failed'));
ALTER TABLE datasets ADD COLUMN progress INTEGER NOT NULL DEFAULT 0;
ALTER TABLE datasets ADD COLUMN error TEXT;

-- version 6
-- Write-time summaries of the metrics, so that a chart of a whole long run reads a few rows
-- per bucket of the view instead of every point: per run, key, level and bucket, the number
-- of points and four of them: the first and last (by step), the lowest and highest value
-- (the earliest on a tie; NULL when the bucket has no value, only NULLs). A bucket of level
-- 0 holds 64 consecutive steps (bucket = step >> 6), one of each level above 4 times more
-- (level l: bucket = step >> (6 + 2 * l)), up to level 4 (16,384 steps), so that a view
-- whatever its length reads a level whose summaries are at most about 4 per bucket of its
-- own. Each is rebuilt in the transaction that writes its rows: level 0 from them, each
-- level above from the one below.
-- Rows from before get theirs here: level 0 in one grouped pass over the rows, then index
-- lookups per bucket for the points (the earliest of equal extremes); the levels above in
-- one grouped pass over level 0.
CREATE TABLE metric_summaries (
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    level       INTEGER NOT NULL,
    bucket      INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    first_step  INTEGER NOT NULL,
    first_value REAL,
    first_time  REAL NOT NULL,
    last_step   INTEGER NOT NULL,
    last_value  REAL,
    last_time   REAL NOT NULL,
    min_step    INTEGER,
    min_value   REAL,
    min_time    REAL,
    max_step    INTEGER,
    max_value   REAL,
    max_time    REAL,
    PRIMARY KEY (run_id, key, level, bucket)
) WITHOUT ROWID;

INSERT INTO metric_summaries
SELECT g.run_id, g.key, 0, g.b, g.n,
       g.fs, f.value, f.time, g.ls, l.value, l.time,
       lo.step, g.lo, lo.time, hi.step, g.hi, hi.time
FROM (SELECT run_id, key, step >> 6 AS b, count(*) AS n, min(step) AS fs, max(step) AS ls,
             min(value) AS lo, max(value) AS hi
      FROM metrics GROUP BY run_id, key, step >> 6) AS g
JOIN metrics AS f ON f.run_id = g.run_id AND f.key = g.key AND f.step = g.fs
JOIN metrics AS l ON l.run_id = g.run_id AND l.key = g.key AND l.step = g.ls
LEFT JOIN metrics AS lo ON lo.run_id = g.run_id AND lo.key = g.key AND lo.step =
    (SELECT step FROM metrics AS x WHERE x.run_id = g.run_id AND x.key = g.key AND
     x.step >= g.fs AND x.step <= g.ls AND x.value = g.lo ORDER BY x.step LIMIT 1)
LEFT JOIN metrics AS hi ON hi.run_id = g.run_id AND hi.key = g.key AND hi.step =
    (SELECT step FROM metrics AS x WHERE x.run_id = g.run_id AND x.key = g.key AND
     x.step >= g.fs AND x.step <= g.ls AND x.value = g.hi ORDER BY x.step LIMIT 1);

INSERT INTO metric_summaries
SELECT g.run_id, g.key, g.level, g.b, g.n,
       f.first_step, f.first_value, f.first_time, l.last_step, l.last_value, l.last_time,
       lo.min_step, lo.min_value, lo.min_time, hi.max_step, hi.max_value, hi.max_time
FROM (SELECT s.run_id, s.key, v.level, s.bucket >> (2 * v.level) AS b, sum(s.n) AS n,
             min(s.bucket) AS fb, max(s.bucket) AS lb, min(s.min_value) AS lo,
             max(s.max_value) AS hi
      FROM metric_summaries AS s
      JOIN (SELECT 1 AS level UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4) AS v
      WHERE s.level = 0 GROUP BY s.run_id, s.key, v.level, s.bucket >> (2 * v.level)) AS g
JOIN metric_summaries AS f ON f.run_id = g.run_id AND f.key = g.key AND f.level = 0 AND
    f.bucket = g.fb
JOIN metric_summaries AS l ON l.run_id = g.run_id AND l.key = g.key AND l.level = 0 AND
    l.bucket = g.lb
LEFT JOIN metric_summaries AS lo ON lo.run_id = g.run_id AND lo.key = g.key AND
    lo.level = 0 AND lo.bucket =
    (SELECT bucket FROM metric_summaries AS x WHERE x.run_id = g.run_id AND x.key = g.key AND
     x.level = 0 AND x.bucket >= g.fb AND x.bucket <= g.lb AND x.min_value = g.lo
     ORDER BY x.bucket LIMIT 1)
LEFT JOIN metric_summaries AS hi ON hi.run_id = g.run_id AND hi.key = g.key AND
    hi.level = 0 AND hi.bucket =
    (SELECT bucket FROM metric_summaries AS x WHERE x.run_id = g.run_id AND x.key = g.key AND
     x.level = 0 AND x.bucket >= g.fb AND x.bucket <= g.lb AND x.max_value = g.hi
     ORDER BY x.bucket LIMIT 1);
