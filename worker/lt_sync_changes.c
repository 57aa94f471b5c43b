/* lt_sync: mail.change.v1 events in the batch's transaction, and the
 * known-message set that moves with it (docs/events.md, "mail.change.v1";
 * docs/delivery-protocol.md, "Known messages"). */
#include "lt_sync_internal.h"

#include <string.h>

#include <json-c/json.h>

#include "lt_clock.h"

int lt_sync_changes_enabled(const lt_sync_t *s, const char *scope)
{
    if (!s->env.track_changes || !s->env.change_codec)
        return 0;
    json_object *cfg = lt_account_config(s->account), *v, *off;
    if (!cfg || !json_object_object_get_ex(cfg, "track_changes", &v))
        return 1;
    if (json_object_is_type(v, json_type_boolean))
        return json_object_get_boolean(v);
    if (!scope || !json_object_is_type(v, json_type_object) ||
        !json_object_object_get_ex(v, "off", &off) || !json_object_is_type(off, json_type_array))
        return 1;
    for (size_t i = 0, n = json_object_array_length(off); i < n; i++) {
        const char *x = json_object_get_string(json_object_array_get_idx(off, i));
        if (x && !strcmp(x, scope))
            return 0;
    }
    return 1;
}

lt_err_t lt_sync_change(lt_sync_t *s, const lt_sync_change_t *c, char *errstr,
                        size_t errstr_size)
{
    if (!s->env.change_codec || !s->env.change_topic)
        return lt_seterr(errstr, errstr_size, LT_ERR_FINAL,
                         "change events are not configured (no codec or topic)");
    if ((unsigned)c->kind > LT_CHANGE_RESET)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "unknown change kind %d",
                         (int)c->kind);
    lt_change_event_t *ev = lt_change_event_new();
    lt_buf_t *wire = lt_buf_new(LT_CHANGE_EVENT_MAX_WIRE);
    lt_change_event_set_event_time(ev, lt_wall_ms());
    lt_change_event_set_tenant_id(ev, lt_account_tenant(s->account));
    lt_change_event_set_account_id(ev, lt_account_id(s->account));
    lt_change_event_set_provider(ev, lt_command_provider(s->cmd));
    lt_change_event_set_mailbox(ev, c->mailbox);
    lt_change_event_set_kind(ev, c->kind);
    lt_change_event_set_provider_message_id(ev, c->provider_message_id);
    lt_change_event_set_position(ev, c->position);
    lt_change_event_set_reset_reason(ev, c->reset_reason);
    for (size_t i = 0; i < c->nitems; i++) {
        if (c->kind == LT_CHANGE_FLAGS)
            lt_change_event_add_flag(ev, c->items[i]);
        else if (c->kind == LT_CHANGE_LABELS)
            lt_change_event_add_label(ev, c->items[i]);
    }
    lt_err_t err = lt_change_event_derive_id(ev, errstr, errstr_size);
    if (!err)
        err = lt_change_event_encode(s->env.change_codec, ev, s->env.change_schema_id, wire,
                                     errstr, errstr_size);
    if (!err)
        err = lt_sync_produce_wire(s, s->env.change_topic, wire, lt_change_event_get_event_id(ev),
                                   errstr, errstr_size);
    if (!err) {
        s->changes_uncommitted[c->kind]++;
        if (c->kind == LT_CHANGE_DELETED && s->track_known)
            lt_known_delta_del(s->known, c->provider_message_id);
    }
    lt_buf_destroy(wire);
    lt_change_event_destroy(ev);
    return err;
}

int64_t lt_sync_changes(const lt_sync_t *s)
{
    return s->changes;
}

int64_t lt_sync_changes_open(const lt_sync_t *s)
{
    int64_t n = 0;
    for (int k = 0; k < 4; k++)
        n += s->changes_uncommitted[k];
    return n;
}

void lt_sync_changes_committed(lt_sync_t *s)
{
    for (int k = 0; k < 4; k++) {
        lt_series_add(s->env.metrics->changes[k], (double)s->changes_uncommitted[k]);
        s->changes += s->changes_uncommitted[k];
        s->changes_uncommitted[k] = 0;
    }
    lt_known_delta_reset(s->known);
}

void lt_sync_changes_aborted(lt_sync_t *s)
{
    memset(s->changes_uncommitted, 0, sizeof(s->changes_uncommitted));
    lt_known_delta_reset(s->known);
}

void lt_sync_track_known(lt_sync_t *s, int on)
{
    s->track_known = on;
}

void lt_sync_known_forget(lt_sync_t *s)
{
    lt_known_delta_forget(s->known);
}

void lt_sync_known_state(lt_sync_t *s, const char *provider_message_id, const char *state)
{
    if (s->track_known)
        lt_known_delta_set(s->known, provider_message_id, state);
}
