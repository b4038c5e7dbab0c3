/*-------------------------------------------------------------------------
 *
 * walship.h
 *	  Declarations shared across walship's source files.
 *
 * IDENTIFICATION
 *	  src/walship.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WALSHIP_H
#define WALSHIP_H

/* The Makefile defines WALSHIP_VERSION from EXTVERSION. */
#ifndef WALSHIP_VERSION
#error "WALSHIP_VERSION is not defined: build with the walship Makefile"
#endif

struct OutputPluginCallbacks;

/* walship.c: the library's initialisation */
extern PGDLLEXPORT void _PG_init(void);

/* worker.c */
extern void ws_register_worker(void);

/* plugin.c: the logical decoding output plugin's entry point */
extern PGDLLEXPORT void _PG_output_plugin_init(struct OutputPluginCallbacks *cb);

#endif							/* WALSHIP_H */
