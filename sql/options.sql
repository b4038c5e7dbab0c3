\pset format unaligned
--
-- Options of the walship output plugin, as passed to
-- pg_logical_slot_get_binary_changes().  Every error is raised before any
-- change is consumed.
--
CREATE TABLE opt_t (id int PRIMARY KEY, v text);
CREATE TABLE opt_u (id int PRIMARY KEY);
CREATE PUBLICATION opt_p1 FOR TABLE opt_t;
CREATE PUBLICATION opt_p2 FOR TABLE opt_u;
SELECT 'init' FROM pg_create_logical_replication_slot('opt_slot', 'walship');
INSERT INTO opt_t VALUES (1, 'one');
INSERT INTO opt_u VALUES (10);

-- publication_names is required
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL);
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'format_version', '1');

-- unknown options are errors that name the option
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', 'opt_p1', 'proto_version', '1');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', 'opt_p1', 'include-xids', '0');

-- format_version: 1 (the default) or 2
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', 'opt_p1', 'format_version', '2');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', 'opt_p1', 'format_version', 'x');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', 'opt_p1', 'format_version', '');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', 'opt_p1', 'format_version', '01');

-- messages: a Boolean
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', 'opt_p1', 'messages', 'maybe');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', 'opt_p1', 'messages', '');

-- origin: any or none
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', 'opt_p1', 'origin', 'local');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', 'opt_p1', 'origin', '');

-- an option given twice
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', 'opt_p1', 'publication_names', 'opt_p2');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', 'opt_p1', 'messages', 'true', 'messages', 'true');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', 'opt_p1', 'format_version', '1', 'format_version', '1');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', 'opt_p1', 'origin', 'any', 'origin', 'none');

-- empty or malformed publication lists
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', '');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', 'opt_p1,');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', '"opt_p1');

-- a publication that does not exist: an error at the first change decoded
-- (the context names its LSN, which varies)
\set SHOW_CONTEXT never
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', 'opt_nope');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', 'opt_p1,opt_nope');
-- names are identifiers: unquoted ones are folded to lower case, quoted
-- ones are not
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', 'OPT_P1');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
    'publication_names', '"OPT_P1"');
\set SHOW_CONTEXT errors

-- the text interface refuses the binary plugin
SELECT count(*) FROM pg_logical_slot_get_changes('opt_slot', NULL, NULL,
    'publication_names', 'opt_p1');
SELECT count(*) FROM pg_logical_slot_peek_changes('opt_slot', NULL, NULL,
    'publication_names', 'opt_p1');

-- none of the above consumed anything; valid options, spelled every way
SELECT * FROM changes('opt_slot', 'publication_names', 'opt_p1',
    'format_version', '1', 'messages', 'off', 'origin', 'ANY');

-- several publications: the union of their tables
INSERT INTO opt_t VALUES (2, 'two');
INSERT INTO opt_u VALUES (20);
SELECT * FROM changes('opt_slot', 'publication_names', 'opt_p1, opt_p2');
INSERT INTO opt_t VALUES (3, 'three');
INSERT INTO opt_u VALUES (30);
SELECT * FROM changes('opt_slot', 'publication_names', 'opt_p2');
-- nothing left
SELECT * FROM changes('opt_slot', 'publication_names', 'opt_p1,opt_p2');

SELECT pg_drop_replication_slot('opt_slot');
DROP PUBLICATION opt_p1, opt_p2;
DROP TABLE opt_t, opt_u;
