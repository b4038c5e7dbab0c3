// Copyright (c) walship developers
//
// t/chdb_http.js
//	  A thin HTTP adapter in front of chdb (ClickHouse 26 as a library, the
//	  npm package "chdb" with @chdb/lib-linux-x64-gnu) for walship's TAP
//	  tests only: there is no ClickHouse 26 server package, so the tests
//	  talk to the real ClickHouse 26 engine through the part of ClickHouse's
//	  HTTP interface walship uses.  It is not a ClickHouse server and not
//	  meant for anything but tests (no users, no sessions, no limits).
//
//	  node t/chdb_http.js --port N --data DIR [--modules DIR]
//
//	  Listens on 127.0.0.1:N only.  One chdb session on DIR (its data
//	  directory, kept across restarts); requests run one at a time.
//
//	  GET /ping                     "Ok.\n"
//	  GET|POST /?query=SQL&k=v...   runs SQL.  The URL's other parameters are
//	                                settings of this query (an unknown one is
//	                                refused, Code: 115), except database,
//	                                user, password and param_* (ignored).
//	                                An INSERT gets the request body, as sent
//	                                and binary-safe, as its data (from a
//	                                file, see insertFromFile()); for other
//	                                statements the body is appended to the
//	                                query, and without a
//	                                query parameter the body is the query.
//	                                Content-Encoding gzip, deflate and zstd
//	                                bodies are decompressed (zstd with
//	                                Debian's zstd program).
//	  Answers 200 with the result (TabSeparated unless the query says
//	  FORMAT), or ClickHouse's error text "Code: N. DB::Exception: ...
//	  (NAME)" with the status a ClickHouse 26 server gives for that error
//	  (400 for data and syntax errors, 404 for unknown tables, databases and
//	  settings, 408, 413, 501, 503 as the server does, else 500) and the
//	  X-ClickHouse-Exception-Code header.
//
//	  Test hooks (not ClickHouse):
//	  POST /walship-test/lose-acks?count=N[&mode=error|close]
//	      the next N INSERTs run and are stored, and then answer 500 (mode
//	      error, the default) or close the connection without an answer
//	      (mode close): a lost acknowledgement.
//	  GET /walship-test/inserts
//	      one JSON line per INSERT run so far: its query, its settings, the
//	      number of body bytes, and whether it was acknowledged.
//
//	  chdb is compiled with defaults of its own that a server does not have:
//	  they are set back to ClickHouse 26 server defaults for the session
//	  (SERVER_DEFAULTS below).
//
// IDENTIFICATION
//	  t/chdb_http.js

'use strict';

const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const zlib = require('zlib');
const { spawnSync } = require('child_process');

function usage(msg)
{
	process.stderr.write(`chdb_http.js: ${msg}\n` +
		'usage: node t/chdb_http.js --port N --data DIR [--modules DIR]\n');
	process.exit(2);
}

const args = {};
for (let i = 2; i < process.argv.length; i += 2)
{
	const name = process.argv[i];
	if (!['--port', '--data', '--modules'].includes(name) || i + 1 >= process.argv.length)
		usage(`bad argument ${name}`);
	args[name.slice(2)] = process.argv[i + 1];
}
if (!args.port || !args.data)
	usage('--port and --data are required');

// chdb from the test cache (test/run-all.sh installs it there)
const modules = args.modules || process.env.WALSHIP_CHDB_MODULES;
if (modules)
	module.paths.unshift(modules);
const chdb = require('chdb');
// the addon itself: its raw insert takes any query text before the data
const native = require(path.join(path.dirname(require.resolve('chdb')), 'dist', 'loader.js')).loadNative();

// chdb's own defaults, and what a ClickHouse 26 server has instead.
// input_format_skip_unknown_fields is 1 on a server too (since 23.x).
const SERVER_DEFAULTS = {
	async_insert: '0',
	date_time_input_format: 'basic',
	input_format_skip_unknown_fields: '1',
};

// URL parameters that are not settings
const NOT_SETTINGS = new Set(['query', 'database', 'user', 'password',
	'default_format', 'query_id', 'session_id', 'session_timeout',
	'session_check', 'compress', 'decompress', 'wait_end_of_query',
	'buffer_size']);

// HTTP status of a ClickHouse 26 server for an exception, by name
const STATUS_BY_NAME = {};
for (const name of ['BAD_ARGUMENTS', 'CANNOT_COMPILE_REGEXP', 'CANNOT_PARSE_TEXT',
	'CANNOT_PARSE_ESCAPE_SEQUENCE', 'CANNOT_PARSE_QUOTED_STRING', 'CANNOT_PARSE_DATE',
	'CANNOT_PARSE_DATETIME', 'CANNOT_PARSE_NUMBER', 'CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING',
	'CANNOT_PARSE_IPV4', 'CANNOT_PARSE_IPV6', 'CANNOT_PARSE_INPUT_ASSERTION_FAILED',
	'CANNOT_PARSE_UUID', 'DUPLICATE_COLUMN', 'ILLEGAL_COLUMN', 'UNKNOWN_ELEMENT_IN_AST',
	'UNKNOWN_TYPE_OF_AST_NODE', 'THERE_IS_NO_COLUMN', 'TOO_DEEP_AST', 'TOO_BIG_AST',
	'UNEXPECTED_AST_STRUCTURE', 'SYNTAX_ERROR', 'INCORRECT_DATA', 'TYPE_MISMATCH',
	'VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE'])
	STATUS_BY_NAME[name] = 400;
for (const name of ['UNKNOWN_TABLE', 'UNKNOWN_FUNCTION', 'UNKNOWN_IDENTIFIER', 'UNKNOWN_TYPE',
	'UNKNOWN_STORAGE', 'UNKNOWN_DATABASE', 'UNKNOWN_SETTING', 'UNKNOWN_DIRECTION_OF_SORTING',
	'UNKNOWN_AGGREGATE_FUNCTION', 'UNKNOWN_FORMAT', 'UNKNOWN_DATABASE_ENGINE',
	'UNKNOWN_TYPE_OF_QUERY', 'UNKNOWN_ROLE'])
	STATUS_BY_NAME[name] = 404;
Object.assign(STATUS_BY_NAME, {
	REQUIRED_PASSWORD: 401, UNKNOWN_USER: 403, WRONG_PASSWORD: 403,
	AUTHENTICATION_FAILED: 403, ACCESS_DENIED: 403, QUERY_IS_TOO_LARGE: 413,
	NOT_IMPLEMENTED: 501, SOCKET_TIMEOUT: 503, CANNOT_OPEN_FILE: 503,
	TIMEOUT_EXCEEDED: 408, CANNOT_SCHEDULE_TASK: 503, UNSUPPORTED_MEDIA_TYPE: 415,
});

// An error as the server writes it: "Code: N. DB::Exception: ... (NAME)"
class ClickHouseError extends Error
{
	constructor(text)
	{
		super(text);
		const m = /^Code: (\d+)\./.exec(text);
		this.code = m ? Number(m[1]) : 1001;
		const n = /\(([A-Z0-9_]+)\)\s*$/.exec(text);
		this.status = (n && STATUS_BY_NAME[n[1]]) || 500;
	}
}

function clickhouseError(e)
{
	let text = String(e && e.message !== undefined ? e.message : e);
	// chdb's prefixes; the server's text starts at "Code:"
	const at = text.indexOf('Code: ');
	if (at > 0)
		text = text.slice(at);
	else if (at < 0)
		text = `Code: 1001. DB::Exception: ${text}. (STD_EXCEPTION)`;
	return new ClickHouseError(text.replace(/\s+$/, ''));
}

function quoteString(s)
{
	return "'" + String(s).replace(/\\/g, '\\\\').replace(/'/g, "\\'") + "'";
}

const session = new chdb.Session(path.resolve(args.data));
for (const [name, value] of Object.entries(SERVER_DEFAULTS))
	session.query(`SET ${name} = ${quoteString(value)}`);

// Runs fn with settings set for it only (restored afterwards).
async function withSettings(settings, fn)
{
	const restore = [];
	try
	{
		for (const [name, value] of settings)
		{
			if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
				throw new ClickHouseError(`Code: 115. DB::Exception: Unknown setting '${name}'. (UNKNOWN_SETTING)`);
			let old;
			try
			{
				old = session.query(`SELECT value FROM system.settings WHERE name = ${quoteString(name)}`,
					'TabSeparatedRaw').replace(/\n$/, '');
				session.query(`SET ${name} = ${quoteString(value)}`);
			}
			catch (e)
			{
				throw clickhouseError(e);
			}
			restore.push([name, old]);
		}
		return await fn();
	}
	finally
	{
		for (const [name, old] of restore.reverse())
			session.query(`SET ${name} = ${quoteString(old)}`);
	}
}

function decompress(body, encoding)
{
	encoding = (encoding || '').trim().toLowerCase();
	if (encoding === '' || encoding === 'identity')
		return body;
	try
	{
		if (encoding === 'gzip' || encoding === 'x-gzip')
			return zlib.gunzipSync(body);
		if (encoding === 'deflate')
			return zlib.inflateSync(body);
		if (encoding === 'br')
			return zlib.brotliDecompressSync(body);
	}
	catch (e)
	{
		throw new ClickHouseError(`Code: 354. DB::Exception: inflate failed: ${e.message}. (ZLIB_INFLATE_FAILED)`);
	}
	if (encoding === 'zstd')
	{
		const r = spawnSync('zstd', ['-dcq'], { input: body, maxBuffer: 1 << 30 });
		if (r.error || r.status !== 0)
			throw new ClickHouseError('Code: 562. DB::Exception: zstd decompression failed: '
				+ (r.error ? r.error.message : String(r.stderr).trim()) + '. (ZSTD_DECODER_FAILED)');
		return r.stdout;
	}
	throw new ClickHouseError(`Code: 48. DB::Exception: Unknown HTTP content encoding: ${encoding}. (NOT_IMPLEMENTED)`);
}

// An INSERT's data is not given to chdb inline: its raw insert runs the
// query text with the data appended as one multi-statement text, and the
// data ends at the first empty line ("\n\n"), the rest being run as more
// SQL.  A RowBinary body holds those two bytes now and then (an Int64 10
// followed by a String of ten bytes), so chdb read past its end ("Attempt
// to read after eof") or stored a prefix of the rows.  Instead the data is
// written to a file and the INSERT reads it with FROM INFILE, placed before
// its SETTINGS or FORMAT clause; VALUES becomes FORMAT Values.  Returns the
// rewritten query, or null when the query does not end in FORMAT name or
// VALUES (then the data goes inline).
const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chdb_http-'));
const dataFile = path.join(tmpDir, 'insert.data');	// no extension: not decompressed
process.on('exit', () => fs.rmSync(tmpDir, { recursive: true, force: true }));

function insertFromFile(sql)
{
	if (!/(?:\bFORMAT\s+\w+|\bVALUES)\s*$/i.test(sql))
		return null;
	// the first SETTINGS, FORMAT or VALUES outside quotes and parentheses
	const re = /'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`|[()]|(?<![\w.$])(SETTINGS|FORMAT|VALUES)\b/gi;
	let depth = 0;
	let m;
	while ((m = re.exec(sql)) !== null)
	{
		if (m[0] === '(')
			depth++;
		else if (m[0] === ')')
			depth--;
		else if (m[1] && depth === 0)
			break;
	}
	if (m === null)
		return null;
	const from = `FROM INFILE ${quoteString(dataFile)} COMPRESSION 'none' `;
	if (m[1].toUpperCase() === 'VALUES')
		return /^VALUES\s*$/i.test(sql.slice(m.index))
			? sql.slice(0, m.index) + from + 'FORMAT Values' : null;
	return sql.slice(0, m.index) + from + sql.slice(m.index);
}

const inserts = [];			// what /walship-test/inserts reports
let loseAcks = { count: 0, mode: 'error' };

async function runQuery(url, body, encoding)
{
	const params = url.searchParams;
	let data = decompress(body, encoding);
	let sql = params.get('query');
	if (sql === null)
	{
		sql = data.toString('utf8');
		data = Buffer.alloc(0);
	}
	const settings = [];
	for (const [name, value] of params)
		if (!NOT_SETTINGS.has(name) && !name.startsWith('param_'))
			settings.push([name, value]);
	const database = params.get('database');

	return withSettings(settings, async () => {
		if (database !== null)
		{
			try
			{
				session.query(`USE ${database.replace(/[^A-Za-z0-9_]/g, '')}`);
			}
			catch (e)
			{
				throw clickhouseError(e);
			}
		}
		try
		{
			if (/^\s*INSERT\b/i.test(sql))
			{
				const record = { query: sql, settings: Object.fromEntries(settings),
					bytes: data.length, acknowledged: false };
				const fromFile = data.length > 0 ? insertFromFile(sql) : null;
				try
				{
					if (fromFile === null)
						await native.InsertRawAsyncConnection(session.connection, sql, data, false);
					else
					{
						fs.writeFileSync(dataFile, data);
						await session.queryAsync(fromFile, { format: 'TabSeparated' });
					}
				}
				catch (e)
				{
					throw clickhouseError(e);
				}
				finally
				{
					if (fromFile !== null)
						fs.rmSync(dataFile, { force: true });
				}
				inserts.push(record);
				return { insert: record, result: Buffer.alloc(0) };
			}
			if (data.length > 0)
				sql = sql + ' ' + data.toString('utf8');
			try
			{
				const r = await session.queryAsync(sql, { format: 'TabSeparated' });
				return { result: Buffer.from(r.bytes()) };
			}
			catch (e)
			{
				throw clickhouseError(e);
			}
		}
		finally
		{
			if (database !== null)
				session.query('USE default');
		}
	});
}

// one request at a time on the one session
let queue = Promise.resolve();

function serialized(fn)
{
	const run = queue.then(fn, fn);
	queue = run.catch(() => {});
	return run;
}

function answer(res, status, body, headers)
{
	res.writeHead(status, Object.assign({ 'Content-Type': 'text/plain; charset=UTF-8',
		'Content-Length': Buffer.byteLength(body) }, headers || {}));
	res.end(body);
}

const server = http.createServer((req, res) => {
	const chunks = [];
	req.on('data', (c) => chunks.push(c));
	req.on('end', async () => {
		const url = new URL(req.url, 'http://127.0.0.1');
		const body = Buffer.concat(chunks);
		if (url.pathname === '/ping')
			return answer(res, 200, 'Ok.\n');
		if (url.pathname === '/walship-test/lose-acks')
		{
			loseAcks = { count: Number(url.searchParams.get('count') || 1),
				mode: url.searchParams.get('mode') || 'error' };
			return answer(res, 200, 'Ok.\n');
		}
		if (url.pathname === '/walship-test/inserts')
			return answer(res, 200, inserts.map((i) => JSON.stringify(i) + '\n').join(''),
				{ 'Content-Type': 'application/x-ndjson' });
		if (url.pathname !== '/')
			return answer(res, 404, `Code: 1001. DB::Exception: no handler for ${url.pathname}. (STD_EXCEPTION)\n`);
		try
		{
			const r = await serialized(() => runQuery(url, body, req.headers['content-encoding']));
			if (r.insert && loseAcks.count > 0)
			{
				loseAcks.count--;
				if (loseAcks.mode === 'close')
					return res.socket.destroy();
				return answer(res, 500, 'Code: 209. DB::Exception: walship test adapter: '
					+ 'the INSERT was stored, its acknowledgement is lost. (SOCKET_TIMEOUT)\n',
					{ 'X-ClickHouse-Exception-Code': '209' });
			}
			if (r.insert)
				r.insert.acknowledged = true;
			res.writeHead(200, { 'Content-Type': 'text/tab-separated-values; charset=UTF-8',
				'Content-Length': r.result.length });
			res.end(r.result);
		}
		catch (e)
		{
			const err = e instanceof ClickHouseError ? e : clickhouseError(e);
			answer(res, err.status, err.message + '\n',
				{ 'X-ClickHouse-Exception-Code': String(err.code) });
		}
	});
});
// a lost acknowledgement stays lost: no answer on a closed socket
server.on('clientError', (err, socket) => socket.destroy());
server.on('error', (e) => {
	process.stderr.write(`chdb_http.js: ${e.message}\n`);
	process.exit(e.code === 'EADDRINUSE' ? 98 : 1);
});
server.listen(Number(args.port), '127.0.0.1', () => {
	const version = session.query('SELECT version()', 'TabSeparatedRaw').trim();
	process.stdout.write(`Listening http://127.0.0.1:${args.port} (chdb, ClickHouse ${version})\n`);
});

function shutdown()
{
	server.close();
	queue.then(() => {
		session.close();
		process.exit(0);
	});
	// idle keep-alive connections would hold server.close() open
	if (server.closeAllConnections)
		server.closeAllConnections();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
