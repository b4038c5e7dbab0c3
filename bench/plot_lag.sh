#!/usr/bin/env bash
#
# bench/plot_lag.sh
#	  Plots walship's delivery lag over time from the CSV that the demo
#	  writes with --csv (time, lag_bytes, freshness_seconds,
#	  changes_shipped, sampled from walship.status every 0.5 s):
#
#	  sudo bash demo/run.sh --csv /tmp/lag.csv
#	  bash bench/plot_lag.sh /tmp/lag.csv [out.png]
#
#	  Writes a PNG (default: the CSV's name with .png) with three panels:
#	  freshness (age of the oldest commit not yet acknowledged), WAL the
#	  slot holds (lag_bytes), and changes shipped per second.  Needs gnuplot
#	  (Debian package gnuplot-nox; installed when run as root and missing).
#

set -eu

csv=${1:-}
if [ -z "$csv" ] || [ ! -f "$csv" ]; then
	echo "usage: bash bench/plot_lag.sh FILE.csv [OUT.png]   (FILE.csv from: demo/run.sh --csv FILE.csv)" >&2
	exit 2
fi
png=${2:-${csv%.csv}.png}

if ! command -v gnuplot >/dev/null 2>&1; then
	if [ "$(id -u)" -eq 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null ||
			{ apt-get update -qq >/dev/null &&
			  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null; }
	else
		echo "plot_lag.sh: gnuplot is not installed (sudo apt-get install gnuplot-nox)" >&2
		exit 1
	fi
fi

head -n 1 "$csv" | grep -q '^time,lag_bytes,freshness_seconds,changes_shipped' ||
	{ echo "plot_lag.sh: $csv does not start with time,lag_bytes,freshness_seconds,changes_shipped" >&2; exit 1; }

# changes per second between samples, as a fifth column
data=$(mktemp)
trap 'rm -f "$data"' EXIT
awk -F, 'NR > 1 {
	rate = (NR > 2 && $1 > pt) ? ($4 - pc) / ($1 - pt) : 0
	printf "%s %s %s %s %.1f\n", $1, $2, $3, $4, rate
	pt = $1; pc = $4
}' "$csv" >"$data"
[ -s "$data" ] || { echo "plot_lag.sh: no samples in $csv" >&2; exit 1; }

samples=$(wc -l <"$data")
max_fresh=$(awk '$3 > m { m = $3 } END { printf "%.2f", m }' "$data")
total=$(awk 'END { print $4 }' "$data")

gnuplot <<EOF
set terminal pngcairo size 900,760 font "sans,10"
set output "$png"
set datafile separator " "
set grid ytics lc rgb "#dddddd"
set border 3
set xtics nomirror
set ytics nomirror
set key off
set lmargin 12
set multiplot layout 3,1 title "walship: delivery to ClickHouse during the demo workload\n{/*0.8 $samples samples of walship.status every 0.5 s; $total changes shipped; worst freshness $max_fresh s}"
set title "freshness: age of the oldest commit not yet acknowledged (s)"
set ylabel "seconds"
set yrange [0:*]
plot "$data" using 1:3 with steps lw 2 lc rgb "#d62728"
set title "lag: WAL the slot still holds (lag\\\_bytes)"
set ylabel "kB"
plot "$data" using 1:(\$2 / 1024.0) with steps lw 2 lc rgb "#1f77b4"
set title "changes acknowledged by ClickHouse per second"
set ylabel "changes/s"
set xlabel "seconds since the workload started"
plot "$data" using 1:5 with steps lw 2 lc rgb "#2ca02c"
unset multiplot
EOF
echo "wrote $png"
