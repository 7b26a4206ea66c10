/* syncbit: one binary, many commands (the table is in cli/commands.c). */
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

/* "dataset" alone, with --help or with an unknown subcommand. */
static int run_group(const char *group, int argc, char **argv)
{
	if (argc > 0 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
		cli_print_group(stdout, group);
		return EXIT_OK;
	}
	if (argc > 0)
		cli_error("%s: unknown subcommand '%s'", group, argv[0]);
	else
		cli_error("%s: a subcommand is needed", group);
	cli_print_group(stderr, group);
	return EXIT_USAGE;
}

int main(int argc, char **argv)
{
	/* Blocks (4 MiB by default) move through heap buffers all the time:
	 * keep them out of mmap, whose every fresh mapping is faulted in page
	 * by page and unmapped (with a TLB flush) when freed, and let freed
	 * memory stay for the next block instead of going back to the kernel. */
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	if (argc < 2) {
		cli_print_help(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		cli_print_version(stdout, 0);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		cli_print_help(stdout);
		return EXIT_OK;
	}
	if (cli_is_group(argv[1])) {
		char name[64];
		snprintf(name, sizeof name, "%s %s", argv[1], argc > 2 ? argv[2] : "");
		const struct cli_cmd *c = argc > 2 ? cli_command(name) : NULL;
		if (c)
			return c->run(argc - 3, argv + 3);
		return run_group(argv[1], argc - 2, argv + 2);
	}
	const struct cli_cmd *c = cli_command(argv[1]);
	if (c)
		return c->run(argc - 2, argv + 2);
	cli_error("unknown command '%s' (see 'syncbit help')", argv[1]);
	return EXIT_USAGE;
}
