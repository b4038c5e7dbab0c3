/*-------------------------------------------------------------------------
 *
 * walship.c
 *	  Module entry point of the walship shared library.
 *
 * The same library is the logical decoding output plugin "walship" (see
 * plugin.c), the home of the extension's SQL functions, and, when listed
 * in shared_preload_libraries, the shipping worker (worker.c).  Loading it
 * as an output plugin only keeps working: without preloading, _PG_init
 * defines no settings, reserves no shared memory and starts no worker.
 *
 * IDENTIFICATION
 *	  src/walship.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"

#include "settings.h"
#include "shared_state.h"
#include "walship.h"

#if PG_VERSION_NUM >= 180000
PG_MODULE_MAGIC_EXT(.name = "walship",.version = WALSHIP_VERSION);
#else
PG_MODULE_MAGIC;
#endif

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
walship_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	ws_shared_state_request();
}

static void
walship_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	ws_shared_state_startup();
}

void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;
	if (!process_shared_preload_libraries_in_progress)
		return;

	ws_define_settings();

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = walship_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = walship_shmem_startup;

	ws_register_worker();
}
