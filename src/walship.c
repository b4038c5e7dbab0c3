/*-------------------------------------------------------------------------
 *
 * walship.c
 *	  Module entry point of the walship shared library.
 *
 * The same library is the logical decoding output plugin "walship" (see
 * plugin.c) and the home of the extension's SQL functions.  Loading it as
 * an output plugin only, without shared_preload_libraries, must keep
 * working: _PG_init does nothing that requires preloading.
 *
 * IDENTIFICATION
 *	  src/walship.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "walship.h"

#if PG_VERSION_NUM >= 180000
PG_MODULE_MAGIC_EXT(.name = "walship",.version = WALSHIP_VERSION);
#else
PG_MODULE_MAGIC;
#endif

void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;
}
