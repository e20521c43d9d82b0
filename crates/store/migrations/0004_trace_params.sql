-- A variant's generation params and the caller's values they overrode (JSON).
ALTER TABLE traces ADD COLUMN params_json TEXT;
