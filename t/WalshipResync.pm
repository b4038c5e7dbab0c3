# Copyright (c) walship developers
#
# t/WalshipResync.pm
#	  Helpers of the lost-slot tests (t/070_failover_resync.pl,
#	  t/071_slot_invalidated.pl): what a receiver of the flat NDJSON shape
#	  ends up with, and the comparison with PostgreSQL.
#
#	  A receiver keeps, per key, the line with the highest _version (as a
#	  ClickHouse ReplacingMergeTree(_version) does), drops the rows whose
#	  newest line is a delete, and applies the resync lines
#	  ({"_op": "resync", "_table": T, "_version": V}): rows of T with a
#	  _version below V are gone.
#
# IDENTIFICATION
#	  t/WalshipResync.pm

package WalshipResync;

use strict;
use warnings;

use Exporter 'import';
use Test::More ();
use PostgreSQL::Test::Utils;
use WalshipTest;

our @EXPORT = qw(received_lines replay_differs);

# The decoded lines of the acknowledged requests to $path_re (a regex of
# the request path), in arrival order.
sub received_lines
{
	my ($sink, $path_re) = @_;
	return map { parse_ndjson($sink->body($_->{seq})) }
	  grep { is_2xx($_) && $_->{path} =~ $path_re } $sink->requests;
}

# Loads the acknowledged lines for table $table (requests to
# /ingest/public/$table) into "received_$table" on $node, replays them
# into "replayed_$table" (columns $cols, key $key) and returns the number
# of rows that differ from $table (diagnostics on a difference).
sub replay_differs
{
	my ($node, $sink, $dir, $table, $key, $cols) = @_;
	my $file = "$dir/received_$table.ndjson";
	open my $fh, '>', $file or die "$file: $!";
	for my $r (grep { is_2xx($_) && $_->{path} =~ m{/ingest/public/\Q$table\E$} } $sink->requests)
	{
		print $fh $sink->body($r->{seq});
	}
	close $fh;
	$node->safe_psql('postgres', qq{
DROP TABLE IF EXISTS received_$table, replayed_$table, differ_$table;
CREATE TABLE received_$table (line jsonb);
COPY received_$table FROM '$file' WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02');
CREATE TABLE replayed_$table AS
SELECT * FROM (
  SELECT DISTINCT ON ($key) $cols, deleted, version
    FROM (SELECT r.*, (line->>'_deleted')::int = 1 AS deleted,
                 (line->>'_version')::numeric AS version
            FROM received_$table, jsonb_populate_record(NULL::$table, line) r
           WHERE line->>'_op' <> 'resync') l
   ORDER BY $key, version DESC) newest
 WHERE NOT deleted
   AND version >= coalesce((SELECT max((line->>'_version')::numeric) FROM received_$table
                             WHERE line->>'_op' = 'resync' AND line->>'_table' = '$table'), 0);
CREATE TABLE differ_$table AS
  (SELECT 'source' AS side, $cols FROM $table EXCEPT SELECT 'source', $cols FROM replayed_$table)
  UNION ALL
  (SELECT 'replayed', $cols FROM replayed_$table EXCEPT SELECT 'replayed', $cols FROM $table);
});
	my $differ = $node->safe_psql('postgres', "SELECT count(*) FROM differ_$table");
	if ($differ ne '0')
	{
		Test::More::note("rows of $table that differ:\n"
			  . $node->safe_psql('postgres', "SELECT * FROM differ_$table ORDER BY 2, 1 LIMIT 20")
			  . "\nlines received for their keys:\n"
			  . $node->safe_psql('postgres', qq{
SELECT r.line FROM received_$table r, jsonb_populate_record(NULL::$table, r.line) k
 WHERE ($key) IN (SELECT $key FROM differ_$table)
 ORDER BY (r.line->>'_version')::numeric LIMIT 40}));
	}
	return $differ;
}

1;
