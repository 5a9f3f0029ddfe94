/*
 * ramboot's reference iPXE: settings sources the agent has too
 * (src/config/local/settings.h, after iPXE's config/settings.h).
 */
#define MEMMAP_SETTINGS		/* ${memsize} */
