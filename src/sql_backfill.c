/*-------------------------------------------------------------------------
 *
 * sql_backfill.c
 *	  The check that a backfill's condition is one expression, for
 *	  walship.backfill() and for the worker, which pastes the condition
 *	  into the query that reads each chunk.
 *
 * The condition is text from a walship_admin member and is read as that
 * role, so it cannot grant more than the role has; but a condition such as
 * "false) OR (true" would slip out of its parentheses and undo the chunk's
 * key range, and one ending in a comment would cut off its ORDER BY and
 * LIMIT.  The scanner's tokens tell: parentheses and brackets must balance
 * without ever closing more than was opened, and there is no semicolon.
 * Comments vanish in the scanner; the worker puts the condition on lines of
 * its own, so a "--" comment ends with it.
 *
 * IDENTIFICATION
 *	  src/sql_backfill.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/keywords.h"
#include "fmgr.h"
#include "parser/scanner.h"
#include "utils/builtins.h"

#include "backfill.h"

static void
reject_condition(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid backfill condition"),
			 errdetail("%s", detail),
			 errhint("Give one Boolean expression over the table's columns, as written after WHERE.")));
}

void
ws_check_backfill_condition(const char *condition)
{
	core_yyscan_t scanner;
	core_yy_extra_type extra;
	core_YYSTYPE value;
	int			location;
	int			depth = 0;
	int			token;

	scanner = scanner_init(condition, &extra, &ScanKeywords, ScanKeywordTokens);
	while ((token = core_yylex(&value, &location, scanner)) != 0)
	{
		if (token == '(' || token == '[')
			depth++;
		else if (token == ')' || token == ']')
		{
			if (--depth < 0)
				reject_condition("The condition closes a parenthesis it did not open.");
		}
		else if (token == ';')
			reject_condition("The condition contains a semicolon.");
	}
	scanner_finish(scanner);
	if (depth != 0)
		reject_condition("The condition leaves a parenthesis open.");
}

PG_FUNCTION_INFO_V1(walship_check_backfill_condition);

Datum
walship_check_backfill_condition(PG_FUNCTION_ARGS)
{
	ws_check_backfill_condition(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PG_RETURN_VOID();
}
