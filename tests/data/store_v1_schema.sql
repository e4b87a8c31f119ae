-- The schema of a store made before migrations were renamed in order (m040_decision,
-- m030_workers and m010_tui_indexes recorded under their old names), for
-- tests/test_store_schema.py. Made by engine/store.py at commit 7f12a20.
CREATE TABLE "_sqlite_migrations" (
   "id" INTEGER PRIMARY KEY,
   "migration_set" TEXT,
   "name" TEXT,
   "applied_at" TEXT
);
INSERT INTO "_sqlite_migrations" VALUES(1,'autoresearch','m001_wal','2026-11-01 00:00:00.000000+00:00');
INSERT INTO "_sqlite_migrations" VALUES(2,'autoresearch','m002_schema','2026-11-01 00:00:00.000000+00:00');
INSERT INTO "_sqlite_migrations" VALUES(3,'autoresearch','m040_decision','2026-11-01 00:00:00.000000+00:00');
INSERT INTO "_sqlite_migrations" VALUES(4,'autoresearch','m030_workers','2026-11-01 00:00:00.000000+00:00');
INSERT INTO "_sqlite_migrations" VALUES(5,'autoresearch','m010_tui_indexes','2026-11-01 00:00:00.000000+00:00');
CREATE TABLE commands (
            id INTEGER PRIMARY KEY,
            run_id INTEGER,
            verb TEXT NOT NULL,
            target INTEGER,
            argument TEXT,
            created REAL NOT NULL,
            applied REAL,
            result TEXT
        );
CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            run_id INTEGER,
            experiment_id INTEGER,
            ts REAL NOT NULL,
            level TEXT NOT NULL DEFAULT 'info',
            source TEXT NOT NULL DEFAULT 'engine',
            line TEXT NOT NULL
        );
CREATE TABLE experiments (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id),
            round INTEGER NOT NULL,
            parent INTEGER,
            kind TEXT NOT NULL,
            verdict TEXT NOT NULL DEFAULT 'running',
            reason TEXT,
            description TEXT NOT NULL DEFAULT '',
            rationale TEXT,
            diff TEXT,
            score REAL,
            delta REAL,
            metrics_json TEXT,
            worker TEXT,
            tier TEXT,
            wave INTEGER,
            started REAL NOT NULL,
            finished REAL,
            duration REAL,
            tokens_in INTEGER NOT NULL DEFAULT 0,
            tokens_out INTEGER NOT NULL DEFAULT 0,
            tokens_cache_write INTEGER NOT NULL DEFAULT 0,
            tokens_cache_read INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            git_commit TEXT,
            error TEXT,
            log_tail TEXT
        , decision_json TEXT);
CREATE TABLE item_results (
            id INTEGER PRIMARY KEY,
            experiment_id INTEGER NOT NULL REFERENCES experiments(id),
            item TEXT NOT NULL,
            input TEXT,
            sample INTEGER NOT NULL DEFAULT 0,
            passed INTEGER,
            evidence TEXT
        );
CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            spec_path TEXT,
            spec_json TEXT,
            workspace TEXT,
            direction TEXT NOT NULL DEFAULT 'maximize',
            status TEXT NOT NULL DEFAULT 'created',
            stop_reason TEXT,
            best_experiment INTEGER,
            best_score REAL,
            baseline_score REAL,
            target REAL,
            rounds INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            branch TEXT,
            noise_json TEXT,
            prices_json TEXT,
            engine_pid INTEGER,
            heartbeat REAL,
            created REAL NOT NULL,
            started REAL,
            finished REAL,
            elapsed REAL NOT NULL DEFAULT 0
        );
CREATE TABLE versions (
            experiment_id INTEGER NOT NULL REFERENCES experiments(id),
            path TEXT NOT NULL,
            content TEXT NOT NULL,
            PRIMARY KEY (experiment_id, path)
        );
CREATE TABLE workers (
            run_id INTEGER NOT NULL,
            name TEXT NOT NULL,
            grp TEXT,
            status TEXT NOT NULL DEFAULT 'idle',
            job TEXT,
            reason TEXT,
            failures INTEGER NOT NULL DEFAULT 0,
            retry_at REAL,
            updated REAL NOT NULL,
            PRIMARY KEY (run_id, name)
        );
CREATE UNIQUE INDEX "idx__sqlite_migrations_migration_set_name"
    ON "_sqlite_migrations" ("migration_set", "name");
CREATE INDEX experiments_run ON experiments(run_id, id);
CREATE INDEX item_results_experiment ON item_results(experiment_id);
CREATE INDEX events_run ON events(run_id, id);
CREATE INDEX commands_pending ON commands(applied, run_id);
CREATE INDEX experiments_finished ON experiments(finished);
CREATE INDEX experiments_running ON experiments(verdict)
            WHERE verdict = 'running';
