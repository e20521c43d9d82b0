-- SQLite only (PostgreSQL keeps its index): traces_project_at without the trailing `id`. The
-- table's rowid already ends every entry, so the index still orders a project's traces by
-- time; the 36-character id made every entry ~40 bytes longer and every insert's search
-- compare it (~0.9k instructions a stored trace, BENCHMARKS.md). Pages and the id lookup seek
-- by (project, at) as before and read the id from the row.
DROP INDEX traces_project_at;
CREATE INDEX traces_project_at ON traces (project, at);
