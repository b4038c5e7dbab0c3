\pset format unaligned
--
-- Logical decoding messages (pg_logical_emit_message), emitted only with
-- option messages.
--
CREATE TABLE msg_t (id int PRIMARY KEY);
CREATE PUBLICATION msg_pub FOR TABLE msg_t;
SELECT 'init' FROM pg_create_logical_replication_slot('msg_slot', 'walship');

-- a transactional message among changes: a change of its transaction, with
-- an ordinal
BEGIN;
INSERT INTO msg_t VALUES (1);
SELECT 'emitted' FROM pg_logical_emit_message(true, 'walship_test', 'text content');
INSERT INTO msg_t VALUES (2);
COMMIT;
-- a transactional message alone: begin, message, commit
SELECT 'emitted' FROM pg_logical_emit_message(true, 'walship_test', 'alone');
-- binary content with NUL bytes, and an empty prefix and content
SELECT 'emitted' FROM pg_logical_emit_message(true, 'pfx', '\x00010200'::bytea);
SELECT 'emitted' FROM pg_logical_emit_message(true, '', '');
-- non-transactional messages: outside any transaction, without ordinal
SELECT 'emitted' FROM pg_logical_emit_message(false, 'walship_test', 'right away');
-- a non-transactional message from a transaction that rolls back is
-- still emitted, the transactional one and the changes are not
BEGIN;
INSERT INTO msg_t VALUES (3);
SELECT 'emitted' FROM pg_logical_emit_message(false, 'walship_test', 'kept');
SELECT 'emitted' FROM pg_logical_emit_message(true, 'walship_test', 'rolled back');
ROLLBACK;
-- (non-transactional messages and aborts do not flush the WAL, and decoding
-- stops at its flushed end: the commit of this DDL flushes them)
CREATE FUNCTION msg_peek(slot name, VARIADIC options text[])
RETURNS SETOF jsonb
LANGUAGE sql AS $$
SELECT stable_json(r)
  FROM walship.decode_stream(
         (SELECT coalesce(string_agg(c.data, ''::bytea ORDER BY c.n), ''::bytea)
            FROM pg_logical_slot_peek_binary_changes(slot, NULL, NULL, VARIADIC options)
                 WITH ORDINALITY AS c(lsn, xid, data, n))) AS r
$$;
-- messages are off by default: only the table changes
SELECT * FROM msg_peek('msg_slot', 'publication_names', 'msg_pub');
SELECT * FROM msg_peek('msg_slot', 'publication_names', 'msg_pub', 'messages', 'false');
SELECT * FROM changes('msg_slot', 'publication_names', 'msg_pub', 'messages', 'true');

-- messages do not depend on publications
SELECT 'emitted' FROM pg_logical_emit_message(true, 'walship_test', 'any publication');
CREATE PUBLICATION msg_other FOR TABLE msg_t WITH (publish = 'delete');
INSERT INTO msg_t VALUES (4);
SELECT 'emitted' FROM pg_logical_emit_message(true, 'walship_test', 'after insert');
SELECT * FROM changes('msg_slot', 'publication_names', 'msg_other', 'messages', 'on');

-- multi-byte text in prefix and content
SELECT 'emitted' FROM pg_logical_emit_message(true, 'préfixe', 'contenu é');
SELECT r->>'prefix' AS prefix, convert_from(decode(substr(r->>'content', 3), 'hex'), 'UTF8') AS content
  FROM changes('msg_slot', 'publication_names', 'msg_pub', 'messages', 'on') AS r
 WHERE r->>'kind' = 'message';

SELECT pg_drop_replication_slot('msg_slot');
DROP FUNCTION msg_peek(name, text[]);
DROP PUBLICATION msg_pub, msg_other;
DROP TABLE msg_t;
