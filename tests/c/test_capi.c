/* Exercises every function of the xmpp-hosting C ABI, error paths included.
 * Built with -std=c11 -Wall -Wextra -Werror -pedantic by tests/c/Makefile; prints one line per
 * check and "N passed, N failed"; exits non-zero on any failure. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, for the upload sweep */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <threads.h>
#include <unistd.h>

#include "xmpp_hosting.h"

static int passed, failed;

static void check(int ok, const char *what) {
    if (ok) {
        passed++;
        printf("ok %d - %s\n", passed + failed, what);
    } else {
        failed++;
        printf("not ok %d - %s (last error: %s)\n", passed + failed, what, xh_last_error_message());
    }
}

/* The status is as expected and, for failures, the message is set and contains `needle`. */
static void expect(xh_status got, xh_status want, const char *needle, const char *what) {
    int ok = got == want && xh_last_error_code() == want;
    if (ok && want != XH_OK) ok = needle == NULL || strstr(xh_last_error_message(), needle) != NULL;
    if (ok && want == XH_OK) ok = xh_last_error_message()[0] == '\0';
    check(ok, what);
}

static int contains(const char *haystack, const char *needle) {
    return haystack != NULL && strstr(haystack, needle) != NULL;
}

/* Pulls the value of "key":"…" out of a JSON text into buf (enough for tokens and ids). */
static int json_string(const char *json, const char *key, char *buf, size_t len) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":\"", key);
    const char *start = json ? strstr(json, pattern) : NULL;
    if (!start) return 0;
    start += strlen(pattern);
    const char *end = strchr(start, '"');
    if (!end || (size_t)(end - start) >= len) return 0;
    memcpy(buf, start, (size_t)(end - start));
    buf[end - start] = '\0';
    return 1;
}

static long long json_int(const char *json, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *start = json ? strstr(json, pattern) : NULL;
    return start ? atoll(start + strlen(pattern)) : -1;
}

/* One thread's share of the concurrency check: adds its own domains on the shared handle and
 * checks that its failures land in its own last error. Returns the number of problems. */
enum { THREADS = 4, DOMAINS_PER_THREAD = 25 };

static int worker(void *arg) {
    xh_hosting *h = arg;
    static atomic_int next_id;
    int id = atomic_fetch_add(&next_id, 1), problems = 0;
    char name[64];
    for (int i = 0; i < DOMAINS_PER_THREAD; i++) {
        snprintf(name, sizeof name, "t%d-%d.threads.example", id, i);
        if (xh_domain_add(h, name, NULL) != XH_OK) problems++;
        if (xh_domain_get(h, "missing.threads.example", NULL) != XH_ERR_NOT_FOUND) problems++;
        if (xh_last_error_code() != XH_ERR_NOT_FOUND || !strstr(xh_last_error_message(), "missing.threads")) problems++;
    }
    return problems;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s STORE_PATH\n", argv[0]);
        return 2;
    }
    /* Line-buffered, so the checks before a crash still show. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    char *json = NULL;
    xh_hosting *h = NULL;

    check(strcmp(xh_version(), "0.1.0") == 0, "xh_version is the crate version");

    /* Opening */
    expect(xh_open(NULL, &h), XH_ERR_NULL_POINTER, "path must not be NULL", "xh_open(NULL path)");
    expect(xh_open(argv[1], NULL), XH_ERR_NULL_POINTER, "out must not be NULL", "xh_open(NULL out)");
    expect(xh_open("/nonexistent/dir/store.db", &h), XH_ERR_STORE, "unable to open", "xh_open(bad path)");
    check(h == NULL, "a failed open leaves *out untouched");
    expect(xh_open(argv[1], &h), XH_OK, NULL, "xh_open");
    check(h != NULL, "xh_open gives a handle");

    /* Domains */
    expect(xh_domain_add(h, "Bücher.example", &json), XH_OK, NULL, "xh_domain_add(unicode)");
    check(contains(json, "\"name\":\"xn--bcher-kva.example\"") && contains(json, "\"unicode_name\":\"bücher.example\""),
          "xh_domain_add returns the domain as JSON");
    xh_string_free(json);
    json = NULL;
    expect(xh_domain_add(h, "example.org", NULL), XH_OK, NULL, "xh_domain_add with NULL out_json");
    expect(xh_domain_add(h, "xn--bcher-kva.example", NULL), XH_ERR_ALREADY_EXISTS, "already exists",
           "xh_domain_add(duplicate in ASCII form)");
    expect(xh_domain_add(h, "127.0.0.1", NULL), XH_ERR_INVALID_DOMAIN, "IP address", "xh_domain_add(IP literal)");
    expect(xh_domain_add(h, "a..b", NULL), XH_ERR_INVALID_DOMAIN, "empty label", "xh_domain_add(empty label)");
    expect(xh_domain_add(h, "\xff\xfe.example", NULL), XH_ERR_INVALID_UTF8, "name is not valid UTF-8",
           "xh_domain_add(non-UTF-8)");
    expect(xh_domain_add(h, NULL, NULL), XH_ERR_NULL_POINTER, "name must not be NULL", "xh_domain_add(NULL name)");
    expect(xh_domain_add(NULL, "x.example", NULL), XH_ERR_NULL_POINTER, "h must not be NULL", "xh_domain_add(NULL h)");
    {
        size_t n = 1 << 20;
        char *huge = malloc(n + 1);
        memset(huge, 'a', n);
        huge[n] = '\0';
        expect(xh_domain_add(h, huge, NULL), XH_ERR_INVALID_DOMAIN, "at most 253", "xh_domain_add(1 MiB name)");
        free(huge);
    }
    expect(xh_domain_get(h, "EXAMPLE.org.", &json), XH_OK, NULL, "xh_domain_get");
    check(contains(json, "\"name\":\"example.org\""), "xh_domain_get finds the case-folded name");
    xh_string_free(json);
    json = NULL;
    expect(xh_domain_get(h, "missing.example", &json), XH_ERR_NOT_FOUND, "domain not found", "xh_domain_get(missing)");
    check(json == NULL, "a failed get writes no JSON");
    {
        /* The header's promise: after a failure *out_json is left as the caller set it. */
        char sentinel = 0;
        char *untouched = &sentinel;
        expect(xh_domain_get(h, "missing.example", &untouched), XH_ERR_NOT_FOUND, NULL, "xh_domain_get(sentinel)");
        check(untouched == &sentinel, "a failure leaves *out_json as the caller set it");
        expect(xh_domain_add(h, "a..b", &untouched), XH_ERR_INVALID_DOMAIN, NULL, "xh_domain_add(sentinel)");
        check(untouched == &sentinel, "a refused add leaves *out_json as the caller set it");
    }

    expect(xh_domain_list(h, &json), XH_OK, NULL, "xh_domain_list");
    check(json && json[0] == '[' && strstr(json, "example.org") < strstr(json, "xn--bcher-kva.example"),
          "xh_domain_list is a JSON array ordered by name");
    xh_string_free(json);
    json = NULL;
    expect(xh_domain_list(NULL, &json), XH_ERR_NULL_POINTER, NULL, "xh_domain_list(NULL h)");
    expect(xh_domain_set(h, "example.org", "registration.policy", "open", &json), XH_OK, NULL, "xh_domain_set");
    check(contains(json, "\"policy\":\"open\""), "xh_domain_set returns the updated domain");
    xh_string_free(json);
    json = NULL;
    expect(xh_domain_set(h, "example.org", "registration.policy", "sometimes", NULL), XH_ERR_INVALID_ARGUMENT,
           "cannot set", "xh_domain_set(bad value)");
    expect(xh_domain_set(h, "example.org", "registration.policy", "invite", NULL), XH_OK, NULL, "xh_domain_set back");
    expect(xh_domain_set(h, "example.org", NULL, "x", NULL), XH_ERR_NULL_POINTER, "setting", "xh_domain_set(NULL)");
    expect(xh_domain_remove(h, "bücher.example"), XH_OK, NULL, "xh_domain_remove");
    expect(xh_domain_remove(h, "bücher.example"), XH_ERR_NOT_FOUND, "not found", "xh_domain_remove(again)");

    /* Invites and the registration gate */
    char token[128] = "", ticket_json[512] = "";
    expect(xh_invite_create(h, "{\"domain\":\"example.org\",\"uses\":1,\"note\":\"c test\"}", &json), XH_OK, NULL,
           "xh_invite_create");
    check(json_string(json, "token", token, sizeof token) && strlen(token) >= 22, "the invite has a long token");
    check(contains(json, "\"uri\":\"xmpp:example.org?register;preauth="), "the invite has its XEP-0401 URI");
    long long invite_id = json_int(json ? strstr(json, "\"invite\"") : NULL, "id");
    xh_string_free(json);
    json = NULL;
    expect(xh_invite_create(h, "{\"domain\":\"example.org\",\"usez\":1}", NULL), XH_ERR_INVALID_ARGUMENT,
           "unknown field", "xh_invite_create(unknown field)");
    expect(xh_invite_create(h, "not json", NULL), XH_ERR_INVALID_ARGUMENT, "new invite JSON", "xh_invite_create(not JSON)");
    expect(xh_invite_create(h, "{\"domain\":\"missing.example\"}", NULL), XH_ERR_NOT_FOUND, "domain not found",
           "xh_invite_create(missing domain)");
    expect(xh_invite_check(h, "example.org", token, &json), XH_OK, NULL, "xh_invite_check(valid)");
    check(contains(json, "\"uses_left\":1"), "xh_invite_check returns the invite");
    xh_string_free(json);
    json = NULL;
    expect(xh_invite_check(h, "example.org", "garbage'; DROP TABLE invites; --", NULL), XH_ERR_NOT_FOUND, NULL,
           "xh_invite_check(garbage)");
    expect(xh_invite_list(h, "example.org", &json), XH_OK, NULL, "xh_invite_list");
    check(contains(json, "\"note\":\"c test\"") && !contains(json, token), "xh_invite_list lists without the token");
    xh_string_free(json);
    json = NULL;

    expect(xh_registration_begin(h, "example.org", "mallory", NULL, NULL, &json), XH_OK, NULL,
           "xh_registration_begin(no token)");
    check(contains(json, "\"decision\":\"refused\"") && contains(json, "\"condition\":\"not-allowed\""),
          "registration without a token is refused with not-allowed");
    xh_string_free(json);
    json = NULL;
    expect(xh_registration_begin(h, "example.org", "alice", "192.0.2.1", token, &json), XH_OK, NULL,
           "xh_registration_begin(with token)");
    check(contains(json, "\"decision\":\"allowed\""), "registration with the token is allowed");
    snprintf(ticket_json, sizeof ticket_json, "%s", json ? json : "");
    xh_string_free(json);
    json = NULL;
    long long ticket = json_int(ticket_json, "id");
    expect(xh_registration_finish(h, ticket, true), XH_OK, NULL, "xh_registration_finish(created)");
    expect(xh_registration_finish(h, ticket, true), XH_ERR_NOT_FOUND, "pending registration",
           "xh_registration_finish(twice)");
    expect(xh_invite_check(h, "example.org", token, NULL), XH_ERR_NOT_FOUND, NULL, "a used invite no longer checks");
    expect(xh_registration_begin(h, "example.org", NULL, NULL, NULL, NULL), XH_ERR_NULL_POINTER, "username",
           "xh_registration_begin(NULL username)");
    expect(xh_invite_revoke(h, "example.org", invite_id), XH_OK, NULL, "xh_invite_revoke");
    expect(xh_invite_list(h, "example.org", &json), XH_OK, NULL, "xh_invite_list after revoke");
    check(contains(json, "\"revoked_by\":\"admin\""), "the revoked invite is listed as revoked by the admin");
    xh_string_free(json);
    json = NULL;
    expect(xh_invite_revoke(h, "example.org", 999999), XH_ERR_NOT_FOUND, "invite not found",
           "xh_invite_revoke(missing)");
    expect(xh_invite_revoke(h, "bad..domain", invite_id), XH_ERR_INVALID_DOMAIN, NULL, "xh_invite_revoke(bad domain)");

    /* XEP-0379: a roster invite pre-approves an existing account's subscription, once. */
    char roster_token[128] = "";
    expect(xh_invite_create(h, "{\"domain\":\"example.org\",\"kind\":\"roster\",\"inviter\":\"alice@example.org\"}",
                            &json),
           XH_OK, NULL, "xh_invite_create(roster)");
    check(json_string(json, "token", roster_token, sizeof roster_token), "the roster invite has a token");
    xh_string_free(json);
    json = NULL;
    expect(xh_subscription_preauthorize(h, "carol@example.org", "bob@elsewhere.example", roster_token, &json), XH_OK,
           NULL, "xh_subscription_preauthorize(other inviter)");
    check(contains(json, "\"decision\":\"ignored\"") && contains(json, "\"reason\":\"other-inviter\""),
          "a token sent to someone else than its inviter is ignored");
    xh_string_free(json);
    json = NULL;
    expect(xh_subscription_preauthorize(h, "alice@example.org", "bob@elsewhere.example", roster_token, &json), XH_OK,
           NULL, "xh_subscription_preauthorize");
    check(contains(json, "\"decision\":\"approved\""), "the inviter's token approves the subscription");
    xh_string_free(json);
    json = NULL;
    expect(xh_subscription_preauthorize(h, "alice@example.org", "dave@elsewhere.example", roster_token, &json), XH_OK,
           NULL, "xh_subscription_preauthorize(again)");
    check(contains(json, "\"reason\":\"invalid-invite\""), "the single use is spent");
    xh_string_free(json);
    json = NULL;
    expect(xh_subscription_preauthorize(h, "alice@missing.example", "bob@elsewhere.example", roster_token, NULL),
           XH_ERR_NOT_FOUND, "not found", "xh_subscription_preauthorize(unhosted inviter)");
    expect(xh_subscription_preauthorize(h, "alice@example.org", "bob@elsewhere.example/phone", roster_token, NULL),
           XH_ERR_INVALID_ARGUMENT, "bare JID", "xh_subscription_preauthorize(full JID)");
    expect(xh_subscription_preauthorize(h, "alice@example.org", NULL, roster_token, NULL), XH_ERR_NULL_POINTER,
           "contact", "xh_subscription_preauthorize(NULL contact)");
    expect(xh_subscription_preauthorize(h, "alice@example.org", "bob@elsewhere.example", "\xff", NULL),
           XH_ERR_INVALID_UTF8, "token", "xh_subscription_preauthorize(non-UTF-8 token)");

    /* Every entry point refuses NULL and non-UTF-8 arguments instead of crashing. */
    expect(xh_domain_get(NULL, "example.org", NULL), XH_ERR_NULL_POINTER, "h must not be NULL", "xh_domain_get(NULL h)");
    expect(xh_domain_get(h, NULL, NULL), XH_ERR_NULL_POINTER, "name", "xh_domain_get(NULL name)");
    expect(xh_domain_get(h, "\xc3\x28.example", NULL), XH_ERR_INVALID_UTF8, "name", "xh_domain_get(non-UTF-8)");
    expect(xh_domain_remove(NULL, "example.org"), XH_ERR_NULL_POINTER, "h", "xh_domain_remove(NULL h)");
    expect(xh_domain_remove(h, NULL), XH_ERR_NULL_POINTER, "name", "xh_domain_remove(NULL name)");
    expect(xh_domain_remove(h, "\x80"), XH_ERR_INVALID_UTF8, "name", "xh_domain_remove(non-UTF-8)");
    expect(xh_domain_remove(h, "-bad-.example"), XH_ERR_INVALID_DOMAIN, NULL, "xh_domain_remove(invalid domain)");
    expect(xh_invite_create(NULL, "{\"domain\":\"example.org\"}", NULL), XH_ERR_NULL_POINTER, "h",
           "xh_invite_create(NULL h)");
    expect(xh_invite_create(h, NULL, NULL), XH_ERR_NULL_POINTER, "new_invite_json", "xh_invite_create(NULL JSON)");
    expect(xh_invite_create(h, "{\"domain\":\"\xff\"}", NULL), XH_ERR_INVALID_UTF8, "new_invite_json",
           "xh_invite_create(non-UTF-8)");
    expect(xh_invite_create(h, "{\"domain\":\"example.org\",\"uses\":-1}", NULL), XH_ERR_INVALID_ARGUMENT, NULL,
           "xh_invite_create(negative uses)");
    expect(xh_invite_list(NULL, "example.org", NULL), XH_ERR_NULL_POINTER, "h", "xh_invite_list(NULL h)");
    expect(xh_invite_list(h, NULL, NULL), XH_ERR_NULL_POINTER, "domain", "xh_invite_list(NULL domain)");
    expect(xh_invite_list(h, "\xfe", NULL), XH_ERR_INVALID_UTF8, "domain", "xh_invite_list(non-UTF-8)");
    expect(xh_invite_list(h, "a..b", NULL), XH_ERR_INVALID_DOMAIN, NULL, "xh_invite_list(invalid domain)");
    expect(xh_invite_revoke(NULL, "example.org", 1), XH_ERR_NULL_POINTER, "h", "xh_invite_revoke(NULL h)");
    expect(xh_invite_revoke(h, NULL, 1), XH_ERR_NULL_POINTER, "domain", "xh_invite_revoke(NULL domain)");
    expect(xh_invite_revoke(h, "\xfe", 1), XH_ERR_INVALID_UTF8, "domain", "xh_invite_revoke(non-UTF-8)");
    expect(xh_invite_check(NULL, "example.org", token, NULL), XH_ERR_NULL_POINTER, "h", "xh_invite_check(NULL h)");
    expect(xh_invite_check(h, "example.org", NULL, NULL), XH_ERR_NULL_POINTER, "token", "xh_invite_check(NULL token)");
    expect(xh_invite_check(h, NULL, token, NULL), XH_ERR_NULL_POINTER, "domain", "xh_invite_check(NULL domain)");
    expect(xh_invite_check(h, "example.org", "\xff\xff", NULL), XH_ERR_INVALID_UTF8, "token",
           "xh_invite_check(non-UTF-8 token)");
    expect(xh_registration_begin(NULL, "example.org", "bob", NULL, NULL, NULL), XH_ERR_NULL_POINTER, "h",
           "xh_registration_begin(NULL h)");
    expect(xh_registration_begin(h, NULL, "bob", NULL, NULL, NULL), XH_ERR_NULL_POINTER, "domain",
           "xh_registration_begin(NULL domain)");
    expect(xh_registration_begin(h, "example.org", "b\xff" "b", NULL, NULL, NULL), XH_ERR_INVALID_UTF8, "username",
           "xh_registration_begin(non-UTF-8 username)");
    expect(xh_registration_begin(h, "example.org", "bob", "\xff", NULL, NULL), XH_ERR_INVALID_UTF8, "ip",
           "xh_registration_begin(non-UTF-8 ip)");
    expect(xh_registration_begin(h, "example.org", "bob", NULL, "\xff", NULL), XH_ERR_INVALID_UTF8, "token",
           "xh_registration_begin(non-UTF-8 token)");
    expect(xh_registration_begin(h, "missing.example", "bob", NULL, NULL, NULL), XH_ERR_NOT_FOUND, "not found",
           "xh_registration_begin(unhosted domain)");
    {
        size_t n = 1 << 20;
        char *huge = malloc(n + 1);
        memset(huge, 'u', n);
        huge[n] = '\0';
        xh_status s = xh_registration_begin(h, "example.org", huge, NULL, NULL, &json);
        check(s != XH_OK ? json == NULL : contains(json, "\"decision\":\"refused\""),
              "xh_registration_begin(1 MiB username) is refused or an error");
        xh_string_free(json);
        json = NULL;
        expect(xh_invite_check(h, "example.org", huge, NULL), XH_ERR_NOT_FOUND, NULL, "xh_invite_check(1 MiB token)");
        free(huge);
    }
    expect(xh_registration_finish(NULL, 1, false), XH_ERR_NULL_POINTER, "h", "xh_registration_finish(NULL h)");
    expect(xh_registration_finish(h, -5, false), XH_ERR_NOT_FOUND, NULL, "xh_registration_finish(unknown ticket)");
    expect(xh_invite_purge(NULL, NULL), XH_ERR_NULL_POINTER, "h", "xh_invite_purge(NULL h)");

    /* An aborted registration gives the invite's use back. */
    expect(xh_invite_create(h, "{\"domain\":\"example.org\",\"uses\":1}", &json), XH_OK, NULL,
           "xh_invite_create(second)");
    check(json_string(json, "token", token, sizeof token), "the second invite has a token");
    xh_string_free(json);
    json = NULL;
    expect(xh_registration_begin(h, "example.org", "carol", NULL, token, &json), XH_OK, NULL,
           "xh_registration_begin(carol)");
    ticket = json_int(json, "id");
    xh_string_free(json);
    json = NULL;
    expect(xh_registration_finish(h, ticket, false), XH_OK, NULL, "xh_registration_finish(not created)");
    expect(xh_invite_check(h, "example.org", token, NULL), XH_OK, NULL, "the invite is usable again");
    expect(xh_invite_purge(h, &json), XH_OK, NULL, "xh_invite_purge");
    check(contains(json, "\"invites_removed\":2"), "xh_invite_purge removes the revoked and the used-up roster invite");
    xh_string_free(json);
    json = NULL;

    /* A removed account leaves no invite acting for it. */
    expect(xh_invite_create(h, "{\"domain\":\"example.org\",\"kind\":\"reset\",\"username\":\"carol\"}", NULL),
           XH_OK, NULL, "xh_invite_create(reset)");
    expect(xh_account_removed(h, "example.org", "carol", &json), XH_OK, NULL, "xh_account_removed");
    check(contains(json, "\"invites_revoked\":1"), "the reset invite for the removed account is revoked");
    xh_string_free(json);
    json = NULL;
    expect(xh_account_removed(h, "unhosted.example", "carol", &json), XH_OK, NULL, "xh_account_removed(unhosted)");
    check(contains(json, "\"invites_revoked\":0"), "an unhosted domain has nothing to remove");
    xh_string_free(json);
    json = NULL;
    expect(xh_account_removed(h, "example.org", NULL, NULL), XH_ERR_NULL_POINTER, "username",
           "xh_account_removed(NULL username)");

    /* Upload quotas */
    expect(xh_domain_set(h, "example.org", "uploads.max_file_size", "100", NULL), XH_OK, NULL, "set max_file_size");
    expect(xh_upload_authorize(h, "example.org", "alice", 101, &json), XH_OK, NULL, "xh_upload_authorize(too large)");
    check(contains(json, "\"decision\":\"denied\"") && contains(json, "\"limit\":\"file-size\"") &&
              contains(json, "\"limit_value\":100"),
          "a file over the limit is denied with the limit");
    xh_string_free(json);
    json = NULL;
    expect(xh_upload_authorize(h, "example.org", "alice", 0, NULL), XH_ERR_INVALID_ARGUMENT, "larger than zero",
           "xh_upload_authorize(0)");
    expect(xh_upload_authorize(h, "example.org", "alice", 40, &json), XH_OK, NULL, "xh_upload_authorize");
    check(contains(json, "\"decision\":\"granted\""), "a small file is granted");
    long long reservation = json_int(json, "id");
    xh_string_free(json);
    json = NULL;
    expect(xh_upload_commit(h, reservation, 40, "file-1"), XH_OK, NULL, "xh_upload_commit");
    expect(xh_upload_commit(h, reservation, 40, "file-1"), XH_ERR_NOT_FOUND, "reservation", "xh_upload_commit(again)");
    expect(xh_upload_usage(h, "example.org", "alice", &json), XH_OK, NULL, "xh_upload_usage");
    check(contains(json, "\"stored\":40") && contains(json, "\"daily\":40"), "the upload is counted");
    xh_string_free(json);
    json = NULL;
    bool known = false;
    expect(xh_file_forget(h, "file-1", &known), XH_OK, NULL, "xh_file_forget");
    check(known, "the ledger knew the file");
    expect(xh_upload_usage(h, "example.org", NULL, &json), XH_OK, NULL, "xh_upload_usage(domain)");
    check(contains(json, "\"stored\":0") && contains(json, "\"daily\":40"), "storage is freed, volume is not");
    xh_string_free(json);
    json = NULL;
    expect(xh_upload_authorize(h, "example.org", "alice", 10, &json), XH_OK, NULL, "xh_upload_authorize(to release)");
    reservation = json_int(json, "id");
    xh_string_free(json);
    json = NULL;
    expect(xh_upload_release(h, reservation), XH_OK, NULL, "xh_upload_release");
    expect(xh_upload_release(h, reservation), XH_ERR_NOT_FOUND, NULL, "xh_upload_release(again)");

    /* A server that names the slot only when the upload completes (ejabberd), and the sweep that
     * forgets files deleted from under a directory. */
    char dir[] = "/tmp/xh-capi-XXXXXX";
    check(mkdtemp(dir) != NULL, "mkdtemp");
    char kept[64], gone[64];
    snprintf(kept, sizeof kept, "%s/kept.bin", dir);
    snprintf(gone, sizeof gone, "%s/gone.bin", dir);
    FILE *f = fopen(kept, "w");
    check(f != NULL && fputs("0123456789", f) >= 0 && fclose(f) == 0, "write a kept file");
    expect(xh_upload_authorize_keyed(h, "example.org", "alice", 10, dir, 18000, &json), XH_OK, NULL,
           "xh_upload_authorize_keyed");
    check(contains(json, "\"decision\":\"granted\""), "a keyed slot is granted");
    xh_string_free(json);
    json = NULL;
    expect(xh_upload_authorize_keyed(h, "example.org", "alice", 20, dir, 0, NULL), XH_OK, NULL,
           "xh_upload_authorize_keyed(second)");
    expect(xh_upload_commit_keyed(h, dir, 10, kept), XH_OK, NULL, "xh_upload_commit_keyed");
    expect(xh_upload_commit_keyed(h, dir, 10, gone), XH_ERR_NOT_FOUND, "reservation",
           "xh_upload_commit_keyed(no slot of that size left)");
    expect(xh_upload_commit_keyed(h, dir, 20, gone), XH_OK, NULL, "xh_upload_commit_keyed(20)");
    expect(xh_upload_commit_keyed(h, NULL, 20, gone), XH_ERR_NULL_POINTER, "slot_key", "xh_upload_commit_keyed(NULL)");
    expect(xh_upload_authorize_keyed(h, "example.org", "alice", 30, dir, 0, NULL), XH_OK, NULL,
           "xh_upload_authorize_keyed(third)");
    bool released = false;
    expect(xh_upload_release_keyed(h, dir, 30, &released), XH_OK, NULL, "xh_upload_release_keyed");
    check(released, "a failed upload gives its open reservation back");
    expect(xh_upload_release_keyed(h, dir, 30, &released), XH_OK, NULL, "xh_upload_release_keyed(again)");
    check(!released, "nothing of that key and size is open any more");
    expect(xh_upload_release_keyed(h, NULL, 10, NULL), XH_ERR_NULL_POINTER, "slot_key", "xh_upload_release_keyed(NULL)");
    uint64_t checked = 0, forgotten = 0;
    expect(xh_upload_sweep(h, dir, &checked, &forgotten), XH_OK, NULL, "xh_upload_sweep");
    check(checked == 2 && forgotten == 1, "the sweep forgets the file that is not there");
    expect(xh_upload_usage(h, "example.org", "alice", &json), XH_OK, NULL, "xh_upload_usage(after sweep)");
    check(contains(json, "\"stored\":10") && contains(json, "\"reserved\":0"), "only the kept file is stored");
    xh_string_free(json);
    json = NULL;
    expect(xh_upload_sweep(h, "/nonexistent/xh-root", &checked, NULL), XH_OK, NULL, "xh_upload_sweep(missing root)");
    check(checked == 0, "a missing root checks nothing");
    uint64_t changed = 99;
    expect(xh_upload_purge(h, &changed), XH_OK, NULL, "xh_upload_purge");
    expect(xh_upload_audit(h, false, &json), XH_OK, NULL, "xh_upload_audit");
    check(json != NULL && strcmp(json, "[]") == 0, "the audit finds no drift");
    xh_string_free(json);
    json = NULL;
    remove(kept);
    rmdir(dir);

    /* Customer domains (no DNS needed to claim) */
    expect(xh_domain_claim(h, "her-name.example", "alice", &json), XH_OK, NULL, "xh_domain_claim");
    check(contains(json, "\"txt\":\"verify=") && contains(json, "\"state\":\"pending\""),
          "the claim gives the TXT record to create");
    xh_string_free(json);
    json = NULL;
    expect(xh_domain_claim(h, "co.uk", "alice", NULL), XH_ERR_INVALID_DOMAIN, "public suffix", "xh_domain_claim(co.uk)");
    expect(xh_domain_verify(h, "unclaimed.example", "alice", NULL), XH_ERR_NOT_FOUND, "claim not found",
           "xh_domain_verify(no claim)");
    expect(xh_dns_check(h, NULL, NULL), XH_ERR_NULL_POINTER, "domain", "xh_dns_check(NULL)");

    /* Housekeeping: the core's schedule, one pass, and the report. */
    {
        xh_housekeeping *hk = NULL;
        uint64_t next = 99;
        expect(xh_housekeeping_new(NULL, NULL, &hk), XH_ERR_NULL_POINTER, "h", "xh_housekeeping_new(NULL h)");
        expect(xh_housekeeping_new(h, "{\"invite_purge\":0}", &hk), XH_ERR_INVALID_ARGUMENT, "more than 0",
               "xh_housekeeping_new(zero interval)");
        expect(xh_housekeeping_new(h, "{\"recheck\":5}", &hk), XH_ERR_INVALID_ARGUMENT,
               "unknown housekeeping setting", "xh_housekeeping_new(unknown step)");
        expect(xh_housekeeping_new(h, "[1]", &hk), XH_ERR_INVALID_ARGUMENT, "overrides_json",
               "xh_housekeeping_new(not an object)");
        expect(xh_housekeeping_new(h, NULL, &hk), XH_OK, NULL, "xh_housekeeping_new(the core's schedule)");
        expect(xh_housekeeping_next_in(hk, &next), XH_OK, NULL, "xh_housekeeping_next_in");
        check(next == 0, "a fresh housekeeping has every step due");
        expect(xh_housekeeping_stale_registrations(hk, &json), XH_OK, NULL, "xh_housekeeping_stale_registrations");
        check(json != NULL && json[0] == '[', "the unfinished registrations are a JSON array");
        xh_string_free(json);
        json = NULL;
        expect(xh_housekeeping_run(hk, "[\"/nonexistent/xh-root\"]", "[]", &json), XH_OK, NULL,
               "xh_housekeeping_run");
        check(contains(json, "\"ran\":[\"checkpoint\",\"domain_recheck\",\"invite_purge\",\"upload_upkeep\",\"retention\",\"certificates\",\"panel_jobs\"]"),
              "the first pass runs every step");
        check(contains(json, "\"failures\":[]"), "no step failed");
        check(json_int(json, "next_in") >= 1 && json_int(json, "next_in") <= 5,
              "the report says to come back within the checkpoint interval");
        xh_string_free(json);
        json = NULL;
        expect(xh_housekeeping_run(hk, NULL, NULL, &json), XH_OK, NULL, "xh_housekeeping_run(again)");
        check(!contains(json, "invite_purge") && !contains(json, "upload_upkeep") && !contains(json, "domain_recheck"),
              "right after a pass only the checkpoint can be due again");
        xh_string_free(json);
        json = NULL;
        expect(xh_housekeeping_next_in(hk, &next), XH_OK, NULL, "xh_housekeeping_next_in(after)");
        check(next <= 5, "the next step is due within the checkpoint interval");
        expect(xh_housekeeping_run(hk, "not json", NULL, NULL), XH_ERR_INVALID_ARGUMENT, "upload_roots_json",
               "xh_housekeeping_run(bad roots)");
        expect(xh_housekeeping_run(hk, NULL, "[{\"id\":\"x\"}]", NULL), XH_ERR_INVALID_ARGUMENT, "answers_json",
               "xh_housekeeping_run(bad answers)");
        expect(xh_housekeeping_next_in(hk, NULL), XH_ERR_NULL_POINTER, "out_seconds",
               "xh_housekeeping_next_in(NULL out)");
        expect(xh_housekeeping_run(NULL, NULL, NULL, NULL), XH_ERR_NULL_POINTER, "hk", "xh_housekeeping_run(NULL)");
        xh_housekeeping_free(hk);
        xh_housekeeping_free(NULL);
        check(xh_last_error_code() == XH_OK, "xh_housekeeping_free(NULL) is a no-op");
    }

    /* Retention: the policy, a user's shorter archive, a sweep of an expired upload, the log. */
    {
        expect(xh_domain_add(h, "retention.example", NULL), XH_OK, NULL, "xh_domain_add(retention.example)");
        expect(xh_retention_show(h, "retention.example", &json), XH_OK, NULL, "xh_retention_show");
        check(contains(json, "\"uploads\":\"never\"") && contains(json, "\"archive\":\"never\""),
              "nothing expires until an admin sets a period");
        xh_string_free(json);
        json = NULL;
        expect(xh_retention_set(h, "retention.example", "archive", "1 week", &json), XH_OK, NULL, "xh_retention_set");
        check(contains(json, "\"archive\":\"1w\""), "the period is stored as written");
        xh_string_free(json);
        json = NULL;
        expect(xh_retention_set(h, "retention.example", "archive", "-1d", NULL), XH_ERR_INVALID_ARGUMENT, "negative",
               "xh_retention_set(negative)");
        expect(xh_retention_set(h, "retention.example", "mam", "1d", NULL), XH_ERR_INVALID_ARGUMENT,
               "no retention setting", "xh_retention_set(unknown)");
        expect(xh_retention_set_user(h, "retention.example", "alice", "1y", NULL), XH_ERR_INVALID_ARGUMENT,
               "at most", "xh_retention_set_user(longer than the domain)");
        expect(xh_retention_set_user(h, "retention.example", "alice", "2d", &json), XH_OK, NULL,
               "xh_retention_set_user");
        check(contains(json, "\"archive\":\"2d\""), "a user may keep less");
        xh_string_free(json);
        json = NULL;
        expect(xh_retention_set_user(h, "retention.example", "alice", NULL, &json), XH_OK, NULL,
               "xh_retention_set_user(NULL: the domain's)");
        check(contains(json, "\"archive\":\"1w\""), "back to the domain's period");
        xh_string_free(json);
        json = NULL;

        char root[] = "/tmp/xh-capi-retention-XXXXXX";
        check(mkdtemp(root) != NULL, "a temporary upload directory");
        char path[128], roots[160];
        snprintf(path, sizeof path, "%s/old.bin", root);
        snprintf(roots, sizeof roots, "[\"%s\"]", root);
        FILE *f = fopen(path, "w");
        check(f != NULL && fputs("12345", f) >= 0 && fclose(f) == 0, "an uploaded file");
        expect(xh_upload_authorize(h, "retention.example", "alice", 5, &json), XH_OK, NULL, "authorize(retention)");
        long long slot = json_int(json, "id");
        xh_string_free(json);
        json = NULL;
        expect(xh_upload_commit(h, slot, 5, path), XH_OK, NULL, "commit(retention)");
        expect(xh_retention_set(h, "retention.example", "uploads", "1s", NULL), XH_OK, NULL, "uploads kept 1 s");
        sleep(2); /* the ledger's clock is the system's: the file must be more than a second old */
        expect(xh_retention_sweep(h, "retention.example", "uploads", 1, roots, &json), XH_OK, NULL,
               "xh_retention_sweep(dry run)");
        check(contains(json, "\"dry_run\":true") && json_int(json, "deleted") == 1 && json_int(json, "bytes") == 5,
              "a dry run counts the expired file");
        xh_string_free(json);
        json = NULL;
        check(access(path, F_OK) == 0, "a dry run deletes nothing");
        expect(xh_retention_sweep(h, "retention.example", "uploads", 0, roots, &json), XH_OK, NULL,
               "xh_retention_sweep");
        check(contains(json, "\"state\":\"done\"") && json_int(json, "deleted") == 1 && json_int(json, "failed") == 0,
              "the sweep deletes the expired file");
        xh_string_free(json);
        json = NULL;
        check(access(path, F_OK) != 0, "the file is gone from disk");
        expect(xh_upload_usage(h, "retention.example", "alice", &json), XH_OK, NULL, "usage after the sweep");
        check(contains(json, "\"stored\":0"), "its quota is free at once");
        xh_string_free(json);
        json = NULL;
        expect(xh_retention_log(h, "retention.example", 10, &json), XH_OK, NULL, "xh_retention_log");
        check(json != NULL && json[0] == '[' && contains(json, "\"dry_run\":false") && contains(json, "\"dry_run\":true"),
              "the log holds the sweep and the dry run");
        xh_string_free(json);
        json = NULL;
        expect(xh_retention_log(h, NULL, 1, NULL), XH_OK, NULL, "xh_retention_log(every domain)");
        expect(xh_retention_sweep(h, "retention.example", "mam", 0, NULL, NULL), XH_ERR_INVALID_ARGUMENT,
               "archive, muc or uploads", "xh_retention_sweep(unknown kind)");
        expect(xh_retention_sweep(h, "retention.example", "uploads", 0, "{", NULL), XH_ERR_INVALID_ARGUMENT,
               "upload_roots_json", "xh_retention_sweep(bad roots)");
        expect(xh_retention_sweep(h, NULL, "uploads", 0, NULL, NULL), XH_ERR_NULL_POINTER, "domain",
               "xh_retention_sweep(NULL domain)");
        rmdir(root);
    }

    /* Certificates: self-signed, PEM and CSR without the key, POSH and its check, refusals, export. */
    {
        expect(xh_domain_add(h, "cert.example", NULL), XH_OK, NULL, "xh_domain_add(cert.example)");
        expect(xh_cert_show(h, "cert.example", NULL), XH_ERR_NOT_FOUND, "cert generate", "xh_cert_show(none yet)");
        expect(xh_cert_generate(h, "cert.example", "dsa", 0, NULL), XH_ERR_INVALID_ARGUMENT, "unknown key type",
               "xh_cert_generate(dsa)");
        expect(xh_cert_generate(h, "cert.example", NULL, 4000, NULL), XH_ERR_INVALID_ARGUMENT, "1 to 3650",
               "xh_cert_generate(4000 days)");
        expect(xh_cert_generate(h, "cert.example", NULL, 0, &json), XH_OK, NULL, "xh_cert_generate");
        check(contains(json, "\"source\":\"self-signed\"") && contains(json, "\"key\":\"ecdsa\"") &&
                  contains(json, "\"conference.cert.example\"") && contains(json, "\"days_left\":36") &&
                  !contains(json, "PRIVATE"),
              "xh_cert_generate writes names, validity and no key");
        xh_string_free(json);
        expect(xh_cert_pem(h, "cert.example", &json), XH_OK, NULL, "xh_cert_pem");
        check(contains(json, "BEGIN CERTIFICATE") && !contains(json, "PRIVATE"), "xh_cert_pem: certificate, no key");
        xh_string_free(json);
        expect(xh_cert_csr(h, "cert.example", &json), XH_OK, NULL, "xh_cert_csr");
        check(contains(json, "BEGIN CERTIFICATE REQUEST") && !contains(json, "PRIVATE"), "xh_cert_csr: a CSR");
        xh_string_free(json);
        char *posh = NULL;
        expect(xh_cert_posh(h, "cert.example", "server", &posh), XH_OK, NULL, "xh_cert_posh");
        check(contains(posh, "\"sha-256\":") && contains(posh, "\"expires\":"), "xh_cert_posh writes the file");
        expect(xh_cert_posh_check(h, "cert.example", posh, &json), XH_OK, NULL, "xh_cert_posh_check");
        check(contains(json, "\"matches\":true"), "the served POSH file matches");
        xh_string_free(json);
        xh_string_free(posh);
        expect(xh_cert_posh(h, "cert.example", "web", NULL), XH_ERR_INVALID_ARGUMENT, "client or server",
               "xh_cert_posh(unknown service)");
        expect(xh_cert_posh_check(h, "cert.example", "<html>", NULL), XH_ERR_INVALID_ARGUMENT, "not a POSH file",
               "xh_cert_posh_check(not POSH)");
        expect(xh_cert_import(h, "cert.example", "not a certificate", NULL), XH_ERR_INVALID_ARGUMENT,
               "not a PEM certificate", "xh_cert_import(garbage)");
        expect(xh_cert_import(h, "cert.example", NULL, NULL), XH_ERR_NULL_POINTER, "pem", "xh_cert_import(NULL)");
        char dir[] = "/tmp/xh-capi-certs-XXXXXX";
        check(mkdtemp(dir) != NULL, "mkdtemp for the export");
        expect(xh_cert_export(h, "cert.example", dir, "prosody", &json), XH_OK, NULL, "xh_cert_export(prosody)");
        check(contains(json, "cert.example.crt") && contains(json, "cert.example.key"), "xh_cert_export lists files");
        xh_string_free(json);
        char crt[128], key[128];
        struct stat st;
        snprintf(crt, sizeof crt, "%s/cert.example.crt", dir);
        snprintf(key, sizeof key, "%s/cert.example.key", dir);
        check(stat(crt, &st) == 0 && (st.st_mode & 0777) == 0644, "the certificate file is 0644");
        check(stat(key, &st) == 0 && (st.st_mode & 0777) == 0600, "the key file is 0600");
        expect(xh_cert_export(h, "cert.example", dir, "lighttpd", NULL), XH_ERR_INVALID_ARGUMENT, "prosody or ejabberd",
               "xh_cert_export(unknown layout)");
        unlink(crt);
        unlink(key);
        rmdir(dir);
        expect(xh_cert_expiry(h, &json), XH_OK, NULL, "xh_cert_expiry");
        /* 364 or 365: whole days, counted down from the moment of generation (slow under valgrind). */
        check(contains(json, "\"domain\":\"cert.example\"") && contains(json, "\"days_left\":36"),
              "xh_cert_expiry lists the domain's days left");
        xh_string_free(json);

        /* ACME: nothing is asked of any CA before the provider configured one; the attempt is recorded. */
        expect(xh_cert_acme_status(h, "cert.example", &json), XH_OK, NULL, "xh_cert_acme_status(never)");
        check(strcmp(json, "null") == 0, "xh_cert_acme_status: null before any attempt");
        xh_string_free(json);
        expect(xh_cert_acme(h, "cert.example", NULL), XH_ERR_INVALID_ARGUMENT, "ACME is not configured: set acme.directory_url",
               "xh_cert_acme(not configured)");
        expect(xh_cert_acme_status(h, "cert.example", &json), XH_OK, NULL, "xh_cert_acme_status");
        check(contains(json, "\"failures\":1") && contains(json, "\"serving\":false") && !contains(json, "PRIVATE"),
              "xh_cert_acme_status: the failed attempt, nothing served");
        xh_string_free(json);
        expect(xh_cert_acme(h, "nowhere.example", NULL), XH_ERR_NOT_FOUND, "nowhere.example", "xh_cert_acme(unknown)");
        expect(xh_cert_acme_renew_due(h, &json), XH_OK, NULL, "xh_cert_acme_renew_due");
        check(strcmp(json, "[]") == 0, "xh_cert_acme_renew_due: nothing issued, nothing due");
        xh_string_free(json);
    }

    /* One handle shared by several threads; each thread keeps its own last error. */
    {
        thrd_t threads[THREADS];
        int started = 0, problems = 0;
        expect(xh_domain_get(h, "example.org", NULL), XH_OK, NULL, "the main thread's last call succeeded");
        for (int i = 0; i < THREADS; i++) started += thrd_create(&threads[i], worker, h) == thrd_success;
        check(started == THREADS, "worker threads started");
        for (int i = 0; i < started; i++) {
            int r = 1;
            thrd_join(threads[i], &r);
            problems += r;
        }
        check(problems == 0, "threads add domains on one handle and see only their own errors");
        check(xh_last_error_code() == XH_OK && xh_last_error_message()[0] == '\0',
              "the threads' failures did not touch the main thread's last error");
        expect(xh_domain_list(h, &json), XH_OK, NULL, "xh_domain_list after the threads");
        int found = 0;
        for (const char *p = json; p && (p = strstr(p, "{\"name\":\"t")) != NULL; p++) found++;
        check(found == THREADS * DOMAINS_PER_THREAD, "every domain the threads added is listed once");
        xh_string_free(json);
        json = NULL;
    }

    /* Publication: a description set and refused, the provider file from the enforced retention,
       the disco forms, the page escaping what an admin typed. */
    {
        char *text = NULL;
        expect(xh_domain_add(h, "publish.example", NULL), XH_OK, NULL, "xh_domain_add(publish.example)");
        expect(xh_publish_set(h, "publish.example", "jurisdiction", "de", &json), XH_OK, NULL, "xh_publish_set");
        check(contains(json, "\"jurisdiction\":\"de\""), "the description is stored");
        xh_string_free(json);
        json = NULL;
        expect(xh_publish_set(h, "publish.example", "server_locations", "[\"uk\"]", NULL), XH_ERR_INVALID_ARGUMENT,
               "not an ISO 3166-1 country code", "xh_publish_set(bad country)");
        expect(xh_publish_set(h, "publish.example", "terms", "{\"en\":\"http://publish.example/t\"}", NULL),
               XH_ERR_INVALID_ARGUMENT, "https", "xh_publish_set(http link)");
        expect(xh_publish_set(h, "publish.example", "organization", "club", NULL), XH_ERR_INVALID_ARGUMENT,
               "unknown variant", "xh_publish_set(bad organization)");
        expect(xh_publish_set(h, "publish.example", "rules", "{\"en\":[\"<script>x</script>\"]}", NULL), XH_OK, NULL,
               "xh_publish_set(rules)");
        expect(xh_publish_set(h, "publish.example", "contacts.abuse", "[\"mailto:abuse@publish.example\"]", NULL),
               XH_OK, NULL, "xh_publish_set(contacts)");
        expect(xh_retention_set(h, "publish.example", "archive", "2w", NULL), XH_OK, NULL, "xh_retention_set(2w)");
        expect(xh_publish_provider_file(h, "publish.example", &text), XH_OK, NULL, "xh_publish_provider_file");
        check(contains(text, "\"maximumMessageArchiveManagementStorageTime\": 14"),
              "the provider file reads the enforced archive retention in days");
        check(contains(text, "\"busFactor\": -1"), "an unset bus factor is n/a");
        xh_string_free(text);
        text = NULL;
        expect(xh_publish_disco(h, "publish.example", &json), XH_OK, NULL, "xh_publish_disco");
        check(contains(json, "http://jabber.org/network/serverinfo") && contains(json, "abuse-addresses"),
              "the XEP-0157 form carries the abuse address");
        xh_string_free(json);
        json = NULL;
        expect(xh_publish_page(h, "publish.example", NULL, 1234, 0, &text), XH_OK, NULL, "xh_publish_page");
        check(contains(text, "<!DOCTYPE html>") && contains(text, "&lt;script&gt;") && !contains(text, "<script>"),
              "the page escapes the admin's text");
        check(contains(text, "14 days") && contains(text, "about 1200"), "the page shows the enforced values and counts");
        xh_string_free(text);
        text = NULL;
        expect(xh_publish_page(h, "publish.example", "de", -1, 1, &text), XH_OK, NULL, "xh_publish_page(json)");
        check(contains(text, "\"rules\"") && !contains(text, "\"accounts\": 1"), "the JSON page, no count given");
        xh_string_free(text);
        text = NULL;
        expect(xh_publish_support_bookmark(h, "publish.example", &json), XH_OK, NULL, "xh_publish_support_bookmark");
        check(json != NULL && strcmp(json, "null") == 0, "no support room, no bookmark");
        xh_string_free(json);
        json = NULL;
        expect(xh_publish_set(h, "publish.example", "support_room", "help@chat.publish.example", NULL), XH_OK, NULL,
               "xh_publish_set(support_room)");
        expect(xh_publish_support_bookmark(h, "publish.example", &json), XH_OK, NULL, "xh_publish_support_bookmark");
        check(contains(json, "\"jid\":\"help@chat.publish.example\"") && contains(json, "\"autojoin\":true"),
              "the support room is a bookmark joined automatically");
        xh_string_free(json);
        json = NULL;
        expect(xh_publish_record_activity(h, "publish.example", "alice"), XH_OK, NULL, "xh_publish_record_activity");
        expect(xh_publish_record_activity(h, "unhosted.example", "alice"), XH_OK, NULL,
               "xh_publish_record_activity(a domain not hosted is ignored)");
        expect(xh_publish_record_activity(h, "publish.example", "a b"), XH_ERR_INVALID_ARGUMENT, "not a username",
               "xh_publish_record_activity(bad username)");
        expect(xh_publish_page(h, "publish.example", NULL, -1, 1, &text), XH_OK, NULL, "xh_publish_page(after a login)");
        check(contains(text, "\"daily_active\": 10"), "the login counts as active today (shown as about 10)");
        xh_string_free(text);
        text = NULL;
        expect(xh_publish_show(h, "missing.example", NULL), XH_ERR_NOT_FOUND, NULL, "xh_publish_show(missing)");
        expect(xh_publish_page(h, NULL, NULL, 0, 0, &text), XH_ERR_NULL_POINTER, "domain", "xh_publish_page(NULL)");
    }

    /* The hosted domain's own users: the core decides who manages them; the caller's account
       store lists them and carries the decision out. */
    {
        long long revision;
        expect(xh_settings_changes(h, -1, &json), XH_OK, NULL, "xh_settings_changes(start)");
        check(contains(json, "\"domains\":[]") && contains(json, "\"next_in\":5"),
              "xh_settings_changes: no domains, only where to start");
        revision = json_int(json, "revision");
        xh_string_free(json);
        json = NULL;
        expect(xh_domain_add(h, "users.example", NULL), XH_OK, NULL, "xh_domain_add(users.example)");
        expect(xh_domain_set(h, "users.example", "owner", "boss@users.example", NULL), XH_OK, NULL,
               "xh_domain_set(owner)");
        expect(xh_user_command_decide(h,
                                      "{\"domain\":\"users.example\",\"requester\":\"boss@users.example\","
                                      "\"action\":\"create\",\"account\":\"Carol\",\"password\":\"pw\","
                                      "\"password_verify\":\"pw\"}",
                                      &json),
               XH_OK, NULL, "xh_user_command_decide(owner creates)");
        check(contains(json, "\"decision\":\"allowed\"") && contains(json, "\"jid\":\"carol@users.example\"") &&
                  contains(json, "\"as\":\"owner\"") && contains(json, "\"condition\":\"conflict\""),
              "the owner may create carol, refused with conflict if the account is there");
        xh_string_free(json);
        json = NULL;
        expect(xh_user_command_decide(h,
                                      "{\"domain\":\"users.example\",\"requester\":\"carol@users.example\","
                                      "\"action\":\"list\"}",
                                      &json),
               XH_OK, NULL, "xh_user_command_decide(a user lists)");
        check(contains(json, "\"decision\":\"refused\"") && contains(json, "\"condition\":\"forbidden\"") &&
                  contains(json, "only the owner of users.example"),
              "a plain user is refused with forbidden and the reason");
        xh_string_free(json);
        json = NULL;
        expect(xh_user_command_decide(h, "{\"domain\":\"users.example\",\"action\":\"explode\"}", NULL),
               XH_ERR_INVALID_ARGUMENT, "user command JSON", "xh_user_command_decide(unknown action)");
        expect(xh_user_command_decide(h, "\"create\"", NULL), XH_ERR_INVALID_ARGUMENT, "user command JSON",
               "xh_user_command_decide(not an object)");
        expect(xh_user_command_decide(h, NULL, NULL), XH_ERR_NULL_POINTER, "command_json",
               "xh_user_command_decide(NULL)");
        expect(xh_user_command_decide(NULL, "{}", NULL), XH_ERR_NULL_POINTER, "h", "xh_user_command_decide(NULL h)");

        expect(xh_user_list(h, "users.example", "[\"zed\",\"Amy\",\"amy\"]", &json), XH_OK, NULL, "xh_user_list");
        check(contains(json, "\"jids\":[\"amy@users.example\",\"zed@users.example\"]") &&
                  contains(json, "2 account(s) on users.example"),
              "xh_user_list: bare JIDs sorted, each once, and the text");
        xh_string_free(json);
        json = NULL;
        expect(xh_user_list(h, "users.example", NULL, &json), XH_OK, NULL, "xh_user_list(no accounts)");
        check(contains(json, "\"jids\":[]"), "xh_user_list(NULL): none");
        xh_string_free(json);
        json = NULL;
        expect(xh_user_list(h, "users.example", "{\"a\":1}", NULL), XH_ERR_INVALID_ARGUMENT,
               "usernames_json is not a JSON array", "xh_user_list(not an array)");
        expect(xh_user_list(h, "missing.example", "[]", NULL), XH_ERR_NOT_FOUND, "missing.example",
               "xh_user_list(missing domain)");

        expect(xh_shared_roster(h, "users.example", "amy", "[\"amy\",\"zed\"]", &json), XH_OK, NULL,
               "xh_shared_roster(off)");
        check(json != NULL && strcmp(json, "null") == 0, "xh_shared_roster: null while switched off");
        xh_string_free(json);
        json = NULL;
        expect(xh_domain_set(h, "users.example", "shared_roster", "on", NULL), XH_OK, NULL, "xh_domain_set(shared_roster)");
        expect(xh_shared_roster(h, "users.example", "amy", "[\"amy\",\"zed\"]", &json), XH_OK, NULL,
               "xh_shared_roster(on)");
        check(contains(json, "\"contacts\":[\"zed@users.example\"]") && contains(json, "\"group\":\"users.example\""),
              "xh_shared_roster: every other account, in the domain's group");
        xh_string_free(json);
        json = NULL;
        expect(xh_shared_roster(h, "users.example", NULL, NULL, &json), XH_OK, NULL, "xh_shared_roster(nobody)");
        check(contains(json, "\"contacts\":[]"), "xh_shared_roster(NULL, NULL): the group, no contacts");
        xh_string_free(json);
        json = NULL;
        expect(xh_shared_roster(h, "users.example", NULL, "nope", NULL), XH_ERR_INVALID_ARGUMENT, "accounts_json",
               "xh_shared_roster(bad JSON)");
        expect(xh_shared_roster(h, NULL, NULL, NULL, NULL), XH_ERR_NULL_POINTER, "domain", "xh_shared_roster(NULL)");

        expect(xh_settings_changes(h, revision, &json), XH_OK, NULL, "xh_settings_changes(since)");
        check(contains(json, "\"domains\":[\"users.example\"]") && json_int(json, "revision") > revision,
              "xh_settings_changes names the domain changed, once");
        xh_string_free(json);
        json = NULL;
        expect(xh_settings_changes(NULL, 0, NULL), XH_ERR_NULL_POINTER, "h", "xh_settings_changes(NULL h)");
    }

    xh_string_free(NULL);
    check(1, "xh_string_free(NULL) is harmless");
    expect(xh_domain_get(h, "missing.example", NULL), XH_ERR_NOT_FOUND, NULL, "a failure just before closing");
    xh_close(h);
    check(xh_last_error_code() == XH_OK, "xh_close succeeds and resets the last error");
    xh_close(NULL);
    check(xh_last_error_code() == XH_OK, "xh_close(NULL) is a no-op");

    /* The store outlives the handle. */
    h = NULL;
    expect(xh_open(argv[1], &h), XH_OK, NULL, "xh_open again");
    expect(xh_domain_get(h, "example.org", NULL), XH_OK, NULL, "the domain was stored");
    xh_close(h);

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
