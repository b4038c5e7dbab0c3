# Copyright (c) walship developers
#
# demo/clickhouse.pl
#	  Runs a throwaway ClickHouse server for demo/run.sh, through the same
#	  harness as the TAP tests (t/WalshipClickHouse.pm): every path in DIR,
#	  127.0.0.1 only, free ports, a password-less "default" user.
#
#	  perl -I t demo/clickhouse.pl DIR
#
#	  Run it in the background as an unprivileged user.  Once the server
#	  answers, it writes DIR/ports ("HTTP_PORT TCP_PORT") and DIR/keeper.pid,
#	  then waits.  SIGTERM or SIGINT stops the server and exits; if this
#	  process dies any other way, the harness's watchdog stops the server.
#
# IDENTIFICATION
#	  demo/clickhouse.pl

use strict;
use warnings;

use POSIX qw(:sys_wait_h);
use WalshipClickHouse;

my $dir = shift or die "usage: perl -I t demo/clickhouse.pl DIR\n";

my ($ok, $why) = WalshipClickHouse->available;
die "clickhouse-server is not installed: $why\n" unless $ok;

my $ch = WalshipClickHouse->new(dir => $dir, start_timeout => 120);
my $stopping = 0;
my $stop = sub { $stopping = 1; };
$SIG{TERM} = $stop;
$SIG{INT} = $stop;
$SIG{HUP} = 'IGNORE';

for my $f ([ 'keeper.pid', "$$\n" ], [ 'ports', $ch->http_port . ' ' . $ch->tcp_port . "\n" ])
{
	open(my $fh, '>', "$dir/$f->[0].tmp") or die "$dir/$f->[0]: $!";
	print $fh $f->[1];
	close $fh or die "$dir/$f->[0]: $!";
	rename("$dir/$f->[0].tmp", "$dir/$f->[0]") or die "$dir/$f->[0]: $!";
}

until ($stopping)
{
	sleep 1;
	# the server exited on its own: say so (its log is in DIR/log)
	if (waitpid($ch->pid, WNOHANG) == $ch->pid)
	{
		print STDERR "clickhouse-server exited with status $?\n";
		last;
	}
}
$ch->stop;
unlink "$dir/keeper.pid", "$dir/ports";
exit 0;
