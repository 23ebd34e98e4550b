/*
 * `sockserv ctl` verbs on the whole configuration: apply and diff (a desired-state file put as
 * one atomic change, guarded by the ETag read so that a concurrent writer is never clobbered),
 * revisions and restore.
 */
#include "cli/ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/common.h"

#define CONFIG_PATH "/api/v1/config"
#define REVISIONS_PATH "/api/v1/config/revisions"
#define REVISIONS_LIMIT_MAX 100

/* A refusal, with a word on what a 404 from an older daemon means. */
static int config_refused(struct cli_ctl_cmd *x, const struct cli_ctl_response *resp,
                          bool route_may_be_missing)
{
    const char *detail = json_string_value(json_object_get(resp->json, "detail"));

    if (route_may_be_missing && resp->status == 404 && detail &&
        strncmp(detail, "no such resource", 16) == 0) {
        cli_ctl_fail("the daemon at %s has no whole-configuration API (%s)",
                     cli_ctl_client_where(x->client), detail);
        return CLI_CTL_EXIT_NOT_FOUND;
    }
    return cli_ctl_refused(x, resp);
}

/* Prints the answer of a change of the whole set (PUT /config, restore). */
static int report_config_change(struct cli_ctl_cmd *x, const struct cli_ctl_response *resp,
                                const char *done)
{
    const json_t *diff = json_object_get(resp->json, "diff");
    const json_t *rev = json_object_get(resp->json, "revision");

    if (x->seen[CLI_CTL_OPT_DRY_RUN] || x->verb == CLI_CTL_DIFF)
        return cli_ctl_dry_run_report(x, resp);
    if (x->json)
        return cli_ctl_print_json(resp->json);
    if (cli_ctl_print_text(cli_ctl_diff_render(diff)) != 0)
        return CLI_CTL_EXIT_FAILURE;
    if (json_array_size(diff) == 0)
        printf("nothing to do (the configuration is at revision %" JSON_INTEGER_FORMAT ")\n",
               json_integer_value(rev));
    else
        printf("%s: revision %" JSON_INTEGER_FORMAT "\n", done, json_integer_value(rev));
    return 0;
}

int cli_ctl_run_apply(struct cli_ctl_cmd *x)
{
    bool prune = x->seen[CLI_CTL_OPT_PRUNE];
    bool dry = x->seen[CLI_CTL_OPT_DRY_RUN] || x->verb == CLI_CTL_DIFF;
    const char *file = x->val[CLI_CTL_OPT_FILE];
    struct cli_ctl_response cur = {0}, resp = {0};
    struct core_err err = {0};
    json_t *doc = NULL, *wanted = NULL, *set = NULL, *body = NULL;
    char etag[256] = "";
    char *text = NULL;
    int r;

    if (!file)
        return cli_ctl_usage_error(x, "%s needs -f FILE (or -f - for standard input)",
                                   x->verb == CLI_CTL_DIFF ? "diff" : "apply");
    r = cli_ctl_read_json(file, &doc);
    if (r != 0)
        return r;
    if (cli_ctl_desired_parse(doc, &wanted, &err) < 0) {
        r = cli_ctl_fail("%s: %s", strcmp(file, "-") == 0 ? "standard input" : file, err.msg);
        goto out;
    }
    if (prune) {
        set = json_incref(wanted);
    } else {
        /* read, merge, write back only if it is still what was read */
        r = cli_ctl_call(x, &(struct cli_ctl_request){.method = "GET", .path = CONFIG_PATH}, &cur);
        if (r != 0)
            goto out;
        if (cur.status != 200) {
            r = config_refused(x, &cur, true);
            goto out;
        }
        if (!json_is_array(json_object_get(cur.json, "listeners"))) {
            r = cli_ctl_fail("unexpected answer from %s%s: no listeners array",
                             cli_ctl_client_where(x->client), CONFIG_PATH);
            goto out;
        }
        if (cur.etag[0])
            snprintf(etag, sizeof(etag), "%s", cur.etag);
        else if (json_is_integer(json_object_get(cur.json, "revision")))
            snprintf(etag, sizeof(etag), "\"r%" JSON_INTEGER_FORMAT "\"",
                     json_integer_value(json_object_get(cur.json, "revision")));
        set = cli_ctl_desired_merge(json_object_get(cur.json, "listeners"), wanted);
    }
    body = set ? json_pack("{s:O}", "listeners", set) : NULL;
    text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (!text) {
        r = cli_ctl_fail("out of memory");
        goto out;
    }
    r = cli_ctl_call(x,
                     &(struct cli_ctl_request){
                         .method = "PUT",
                         .path = dry ? CONFIG_PATH "?dry_run=true" : CONFIG_PATH,
                         .body = text,
                         .if_match = x->if_match[0] ? x->if_match : (etag[0] ? etag : NULL),
                     },
                     &resp);
    if (r != 0)
        goto out;
    if (resp.status == 412 && !x->if_match[0] && etag[0]) {
        r = cli_ctl_refused(x, &resp);
        fprintf(stderr,
                "sockserv ctl: the configuration changed since it was read (%s); "
                "nothing was applied: run it again\n",
                etag);
        goto out;
    }
    if (resp.status < 200 || resp.status >= 300) {
        r = config_refused(x, &resp, true);
        goto out;
    }
    r = report_config_change(x, &resp, "applied");
out:
    free(text);
    json_decref(body);
    json_decref(set);
    json_decref(wanted);
    json_decref(doc);
    cli_ctl_response_fini(&cur);
    cli_ctl_response_fini(&resp);
    return r;
}

/*
 * GETs path (the revisions, list: the list of them) and prints the answer's JSON with --json.
 * Returns -1 with *resp (release it) for the caller to show as text, else the exit status.
 */
static int get_revisions(struct cli_ctl_cmd *x, const char *path, bool list,
                         struct cli_ctl_response *resp)
{
    int r = cli_ctl_call(x, &(struct cli_ctl_request){.method = "GET", .path = path}, resp);

    if (r != 0)
        return r;
    if (resp->status != 200)
        r = config_refused(x, resp, list);
    else if (x->json)
        r = cli_ctl_print_json(resp->json);
    else
        return -1;
    cli_ctl_response_fini(resp);
    return r;
}

static int list_revisions(struct cli_ctl_cmd *x)
{
    static const char *const headers[] = {"REVISION", "TIME", "SOURCE", "SUMMARY"};
    struct cli_ctl_response resp = {0};
    struct cli_ctl_table t;
    char path[96];
    unsigned long limit = 20;
    const json_t *list, *rev;
    size_t i;
    int r;

    if (x->seen[CLI_CTL_OPT_LIMIT] &&
        !cli_parse_ulong(x->val[CLI_CTL_OPT_LIMIT], 1, REVISIONS_LIMIT_MAX, &limit))
        return cli_ctl_usage_error(x, "--limit: '%s' is not a number from 1 to %d",
                                   x->val[CLI_CTL_OPT_LIMIT], REVISIONS_LIMIT_MAX);
    snprintf(path, sizeof(path), REVISIONS_PATH "?limit=%lu", limit);
    r = get_revisions(x, path, true, &resp);
    if (r >= 0)
        return r;
    list = json_object_get(resp.json, "revisions");
    if (cli_ctl_table_init(&t, 4, headers) < 0) {
        cli_ctl_response_fini(&resp);
        return cli_ctl_fail("out of memory");
    }
    t.right = 1u;
    json_array_foreach(list, i, rev)
    {
        char n[32];
        const char *cells[4];

        snprintf(n, sizeof(n), "%" JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(rev, "revision")));
        cells[0] = n;
        cells[1] = json_string_value(json_object_get(rev, "time"));
        cells[2] = json_string_value(json_object_get(rev, "source"));
        cells[3] = json_string_value(json_object_get(rev, "summary"));
        if (cells[3] && !*cells[3])
            cells[3] = NULL;
        if (cli_ctl_table_add(&t, cells) < 0) {
            r = cli_ctl_fail("out of memory");
            goto out;
        }
    }
    r = cli_ctl_print_text(cli_ctl_table_render(&t));
out:
    cli_ctl_table_fini(&t);
    cli_ctl_response_fini(&resp);
    return r;
}

static const char *or_dash(const char *s, const char *dflt)
{
    return s ? s : dflt;
}

static int show_revision(struct cli_ctl_cmd *x, unsigned long n)
{
    struct cli_ctl_response resp = {0};
    const json_t *l;
    char path[96];
    size_t i;
    int r;

    snprintf(path, sizeof(path), REVISIONS_PATH "/%lu", n);
    r = get_revisions(x, path, false, &resp);
    if (r >= 0)
        return r;
    printf("revision: %" JSON_INTEGER_FORMAT "\ntime: %s\nsource: %s\nsummary: %s\nlisteners:",
           json_integer_value(json_object_get(resp.json, "revision")),
           or_dash(json_string_value(json_object_get(resp.json, "time")), "-"),
           or_dash(json_string_value(json_object_get(resp.json, "source")), "-"),
           or_dash(json_string_value(json_object_get(resp.json, "summary")), "-"));
    json_array_foreach(json_object_get(resp.json, "listeners"), i, l)
    {
        printf("%s%s", i ? ", " : " ", or_dash(json_string_value(json_object_get(l, "id")), "?"));
    }
    printf("%s\nchanges:\n", json_array_size(json_object_get(resp.json, "listeners")) ? "" : " -");
    r = cli_ctl_print_text(cli_ctl_diff_render(json_object_get(resp.json, "diff")));
    cli_ctl_response_fini(&resp);
    return r;
}

static bool parse_revision(const char *text, unsigned long *ret)
{
    return cli_parse_ulong(text, 1, UINT32_MAX, ret);
}

int cli_ctl_run_revisions(struct cli_ctl_cmd *x)
{
    unsigned long n;

    if (x->nargs == 0)
        return list_revisions(x);
    if (x->seen[CLI_CTL_OPT_LIMIT])
        return cli_ctl_usage_error(x, "--limit goes with the list, not with one revision");
    if (!parse_revision(x->args[0], &n))
        return cli_ctl_usage_error(x, "'%s' is not a revision number", x->args[0]);
    return show_revision(x, n);
}

int cli_ctl_run_restore(struct cli_ctl_cmd *x)
{
    struct cli_ctl_response resp = {0};
    char path[128], done[64];
    unsigned long n;
    int r;

    if (!parse_revision(x->args[0], &n))
        return cli_ctl_usage_error(x, "'%s' is not a revision number", x->args[0]);
    snprintf(path, sizeof(path), REVISIONS_PATH "/%lu/restore%s", n,
             x->seen[CLI_CTL_OPT_DRY_RUN] ? "?dry_run=true" : "");
    r = cli_ctl_call(x,
                     &(struct cli_ctl_request){.method = "POST",
                                               .path = path,
                                               .if_match = x->if_match[0] ? x->if_match : NULL},
                     &resp);
    if (r != 0)
        return r;
    if (resp.status < 200 || resp.status >= 300) {
        r = config_refused(x, &resp, false);
        cli_ctl_response_fini(&resp);
        return r;
    }
    snprintf(done, sizeof(done), "restored revision %lu", n);
    r = report_config_change(x, &resp, done);
    cli_ctl_response_fini(&resp);
    return r;
}
