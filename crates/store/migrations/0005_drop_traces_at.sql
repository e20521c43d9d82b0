-- Retention deletes old traces project by project over traces_project_at; an index on `at`
-- alone cost every stored trace ~3k instructions (a tenth of its row) and served nothing else.
DROP INDEX IF EXISTS traces_at;
