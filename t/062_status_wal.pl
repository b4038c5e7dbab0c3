# Copyright (c) 2026, walship developers
#
# t/062_status_wal.pl
#	  walship.status as an operator and as anyone else sees it (issue 9):
#	  last_error only for walship_admin members and superusers; and the
#	  slot's WAL named for what it is: lag_bytes (not yet acknowledged, from
#	  confirmed_flush_lsn) and retained_wal_bytes (kept in pg_wal, from
#	  restart_lsn), which an open transaction makes far larger than the lag,
#	  with wal_status and safe_wal_size as pg_replication_slots has them.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WalshipHttpSink;
use WalshipTest;

my $sink = WalshipHttpSink->new(dir => PostgreSQL::Test::Utils::tempdir());

my $node = worker_node('status_wal', q{
walship.format = 'ndjson'
walship.batch_max_delay = '20ms'
walship.retry_min_delay = '50ms'
walship.retry_max_delay = '200ms'
max_slot_wal_keep_size = '1GB'
} . "walship.endpoint = '" . $sink->url('/ingest') . "'\n");
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION walship;
CREATE TABLE items (id int PRIMARY KEY, v text);
CREATE TABLE other (id int);
CREATE PUBLICATION walship FOR TABLE items;
CREATE ROLE plain LOGIN;
CREATE ROLE adm LOGIN IN ROLE walship_admin;
});
ok(wait_streaming($node), 'the worker streams');

sub status_as
{
	my ($role, $sql) = @_;
	return $node->safe_psql('postgres', $sql, extra_params => [ '-U', $role ]);
}

# ---------------------------------------------------------------------------
# 1. last_error: for operators only
# ---------------------------------------------------------------------------
# an endpoint nobody listens on: deliveries fail, the error names the host
my $closed = $sink->port;
$sink->stop;
$node->safe_psql('postgres', q{INSERT INTO items VALUES (1, 'one')});
ok(poll_until($node, q{SELECT state = 'backoff' AND last_error IS NOT NULL FROM walship.status}),
	'endpoint down: an error is reported');
like(status_as('postgres', 'SELECT last_error FROM walship.status'), qr/127\.0\.0\.1|connect/i,
	'superuser: last_error says what failed, and where');
like(status_as('adm', 'SELECT last_error FROM walship.status'), qr/127\.0\.0\.1|connect/i,
	'walship_admin member: last_error says what failed');
is(status_as('plain', q{SELECT last_error IS NULL, last_error_at IS NOT NULL, state FROM walship.status}),
	't|t|backoff', 'plain role: last_error is NULL, its time and the state are shown');
unlike(status_as('plain', 'SELECT s::text FROM walship.status s'), qr/127\.0\.0\.1|\Q$closed\E\/ingest/,
	'plain role: the status names neither host nor endpoint');

$sink->start;
ok(poll_until($node, q{SELECT state = 'streaming' AND last_error IS NULL AND inflight = 0 FROM walship.status}),
	'endpoint back: the change is delivered, the error cleared');

# ---------------------------------------------------------------------------
# 2. lag_bytes and retained_wal_bytes
# ---------------------------------------------------------------------------
# A transaction that wrote and stays open: decoding must be able to restart
# before its first record, so the slot's restart_lsn stays there while its
# confirmed position moves on with what is shipped.
my $open = $node->background_psql('postgres');
$open->query_safe(q{BEGIN; INSERT INTO other VALUES (1);});

my $start = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$node->safe_psql('postgres', q{
INSERT INTO items SELECT g, repeat('x', 500) FROM generate_series(2, 20001) g;
});
my $end = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok(wait_worker_caught_up($node, $end), 'the rows are shipped and confirmed');

my ($lag, $retained, $expected_retained, $restart_before_start, $wal_status, $slot_wal_status,
	$safe, $slot_safe) = split /\|/, $node->safe_psql('postgres', qq{
SELECT s.lag_bytes, s.retained_wal_bytes,
       pg_wal_lsn_diff(s.current_lsn, r.restart_lsn)::bigint,
       r.restart_lsn < '$start',
       s.wal_status, r.wal_status, s.safe_wal_size, r.safe_wal_size
  FROM walship.status s, pg_replication_slots r
 WHERE r.slot_name = 'walship'});
ok($restart_before_start eq 't', 'the open transaction holds restart_lsn back');
cmp_ok($retained, '>=', 10_000_000, "retained_wal_bytes counts the WAL written since ($retained bytes)");
cmp_ok($retained, '>=', $lag, "retained_wal_bytes >= lag_bytes ($retained >= $lag)");
cmp_ok($lag, '<', 1_000_000, "lag_bytes is small once all is acknowledged ($lag bytes)");
# restart_lsn does not move while the transaction is open; current_lsn is the
# status's own, so this is exact up to WAL flushed between the two reads
cmp_ok(abs($retained - $expected_retained), '<=', 65536,
	"retained_wal_bytes = current_lsn - restart_lsn ($retained vs $expected_retained)");
is($wal_status, $slot_wal_status, "wal_status as pg_replication_slots says ($wal_status)");
cmp_ok(abs($safe - $slot_safe), '<=', 1_000_000,
	"safe_wal_size as pg_replication_slots says ($safe vs $slot_safe)");
is(status_as('plain', q{SELECT retained_wal_bytes >= lag_bytes AND wal_status IS NOT NULL FROM walship.status}),
	't', 'plain role: the WAL figures are shown');

$open->query_safe('COMMIT');
$open->quit;

$node->stop;
$sink->stop;
done_testing();
