/* lattice-config: print the settings table as --help text or as a
 * .env.example file (`make env-example` uses it). */
#include <stdio.h>
#include <string.h>

#include "lt_config.h"

static void usage(FILE *out)
{
    fputs("usage: lattice-config env-example | help\n"
          "  env-example   print .env.example generated from the settings table\n"
          "  help          print every setting with its type, default and description\n",
          out);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "env-example")) {
        lt_config_print_env_example(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        lt_config_print_help(stdout, LT_PROG_ALL);
        return 0;
    }
    usage(stderr);
    return 2;
}
