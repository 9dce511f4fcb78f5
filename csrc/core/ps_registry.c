/*
 * ps_registry.c: scopes, their channel tables, the pid table and the
 * watchers.  See ps_registry.h for who may touch what under which lock.
 *
 * Membership events (a join or leave seen by a watcher) are ps_rmsg items
 * with PS_RMSG_EVENT, topic "join" or "leave", the channel's name, and the
 * member's pid as sender.  Events for local changes are pushed through the
 * owner side (the caller holds the GIL); events for remote changes through
 * the remote side, since the I/O thread makes them.
 */
#include "ps_registry.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A chained hash table of ps_hlink: channels by name, scopes by name. */
typedef struct htab {
    ps_hlink **buckets;
    uint32_t mask;              /* buckets - 1; buckets NULL when empty */
    uint32_t count;
} htab;

typedef struct mbvec {
    ps_mailbox **v;
    uint32_t n, cap;
} mbvec;

struct ps_registry {
    ps_hlink link;              /* first: in the scope table */
    ps_registry *next, *prev;   /* every scope, in creation order */
    uint32_t refs;              /* holders (Scope objects) */
    int permanent;              /* the default scope */
    htab local;
    htab remote;
    mbvec swatch;               /* watchers of the whole scope */
    uint32_t name_len;
    char name[];
};

uint64_t ps_registry_generation;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static ps_registry *scopes, *scopes_last;
static htab scope_tab;
static ps_registry_hooks hooks;
static mbvec node_watchers;

/* The pid table: open addressing, linear probing, backward-shift delete. */
static ps_mailbox **pids;
static uint32_t pids_mask, pids_count;

void
ps_registry_lock(void)
{
    pthread_mutex_lock(&reg_lock);
}

void
ps_registry_unlock(void)
{
    pthread_mutex_unlock(&reg_lock);
}

void
ps_registry_set_hooks(const ps_registry_hooks *h)
{
    ps_registry_lock();
    if (h)
        hooks = *h;
    else
        memset(&hooks, 0, sizeof hooks);
    ps_registry_unlock();
}

/* ---- growable arrays ---- */

/* Make room for one more element of size sz in *v of capacity *cap. */
static int
grow(void **v, uint32_t n, uint32_t *cap, size_t sz)
{
    uint32_t ncap;
    void *nv;

    if (n < *cap)
        return 0;
    ncap = *cap ? *cap + *cap / 2 + 1 : 2;
    if (ncap < *cap)
        return PS_ENOMEM;
    nv = realloc(*v, ncap * sz);
    if (nv == NULL)
        return PS_ENOMEM;
    *v = nv;
    *cap = ncap;
    return 0;
}

/* Give memory back when an array is mostly empty. */
static void
shrink(void **v, uint32_t n, uint32_t *cap, size_t sz)
{
    void *nv;

    if (*cap < 16 || n > *cap / 4)
        return;
    if (n == 0) {
        free(*v);
        *v = NULL;
        *cap = 0;
        return;
    }
    nv = realloc(*v, (size_t)(n * 2) * sz);
    if (nv != NULL) {
        *v = nv;
        *cap = n * 2;
    }
}

static int
mbvec_add(mbvec *w, ps_mailbox *mb)
{
    if (grow((void **)&w->v, w->n, &w->cap, sizeof *w->v) != 0)
        return PS_ENOMEM;
    w->v[w->n++] = mb;
    return 0;
}

/* Remove one occurrence of mb.  0 or PS_ENOTJOINED. */
static int
mbvec_del(mbvec *w, ps_mailbox *mb)
{
    for (uint32_t i = 0; i < w->n; i++) {
        if (w->v[i] == mb) {
            w->v[i] = w->v[--w->n];
            shrink((void **)&w->v, w->n, &w->cap, sizeof *w->v);
            return 0;
        }
    }
    return PS_ENOTJOINED;
}

/* ---- hash tables ---- */

static inline ps_channel *
chan(ps_hlink *l)
{
    return (ps_channel *)l;
}

/* Rehash into nsize buckets; on failure keep the old table. */
static void
htab_resize(htab *t, uint32_t nsize)
{
    ps_hlink **nb = calloc(nsize, sizeof *nb);
    uint32_t old = t->buckets ? t->mask + 1 : 0;

    if (nb == NULL)
        return;
    for (uint32_t i = 0; i < old; i++) {
        ps_hlink *l = t->buckets[i], *next;

        for (; l != NULL; l = next) {
            next = l->next;
            l->next = nb[l->hash & (nsize - 1)];
            nb[l->hash & (nsize - 1)] = l;
        }
    }
    free(t->buckets);
    t->buckets = nb;
    t->mask = nsize - 1;
}

static int
htab_insert(htab *t, ps_hlink *l)
{
    if (t->buckets == NULL)
        htab_resize(t, 8);
    if (t->buckets == NULL)
        return PS_ENOMEM;
    if (t->count > t->mask)
        htab_resize(t, (t->mask + 1) * 2);
    l->next = t->buckets[l->hash & t->mask];
    t->buckets[l->hash & t->mask] = l;
    t->count++;
    return 0;
}

static void
htab_remove(htab *t, ps_hlink *l)
{
    ps_hlink **pp = &t->buckets[l->hash & t->mask];

    while (*pp != l)
        pp = &(*pp)->next;
    *pp = l->next;
    t->count--;

    /* Shrink so that a burst of dynamic names leaves nothing behind. */
    if (t->count == 0) {
        free(t->buckets);
        t->buckets = NULL;
        t->mask = 0;
    } else if (t->mask >= 64 && t->count < (t->mask + 1) / 8) {
        htab_resize(t, (t->mask + 1) / 4);
    }
}

/* ---- channel tables ---- */

static ps_channel *
ctab_find(const htab *t, uint64_t h, const char *name, size_t len)
{
    ps_channel *c;

    if (t->buckets == NULL)
        return NULL;
    for (c = chan(t->buckets[h & t->mask]); c != NULL;
         c = chan(c->link.next)) {
        if (c->link.hash == h && c->name_len == len &&
            memcmp(c->name, name, len) == 0)
            return c;
    }
    return NULL;
}

static ps_channel *
channel_new(ps_registry *reg, uint64_t h, const char *name, size_t len)
{
    ps_channel *c = calloc(1, sizeof *c + len + 1);

    if (c == NULL)
        return NULL;
    c->reg = reg;
    c->link.hash = h;
    c->name_len = (uint32_t)len;
    memcpy(c->name, name, len);
    return c;
}

static void
channel_free(ps_channel *c)
{
    free(c->members);
    free(c->watchers);
    free(c->rmembers);
    free(c->rnodes);
    free(c);
}

/* Free a local channel that has neither members nor watchers. */
static void
local_maybe_free(ps_channel *c)
{
    if (c->n == 0 && c->nwatch == 0) {
        ps_registry_generation++;
        htab_remove(&c->reg->local, &c->link);
        channel_free(c);
    }
}

/* Find or make the local channel (lock held).  NULL when out of memory. */
static ps_channel *
local_get(ps_registry *reg, const char *name, size_t len)
{
    uint64_t h = ps_hash(name, len);
    ps_channel *c = ctab_find(&reg->local, h, name, len);

    if (c != NULL)
        return c;
    c = channel_new(reg, h, name, len);
    ps_registry_generation++;
    if (c != NULL && htab_insert(&reg->local, &c->link) != 0) {
        channel_free(c);
        c = NULL;
    }
    return c;
}

/* ---- scopes ---- */

/* Lock held: free reg when nothing uses it any more. */
static void
scope_maybe_free(ps_registry *reg)
{
    if (reg->permanent || reg->refs > 0 || reg->local.count > 0 ||
        reg->remote.count > 0 || reg->swatch.n > 0)
        return;
    htab_remove(&scope_tab, &reg->link);
    if (reg->prev != NULL)
        reg->prev->next = reg->next;
    else
        scopes = reg->next;
    if (reg->next != NULL)
        reg->next->prev = reg->prev;
    else
        scopes_last = reg->prev;
    free(reg->swatch.v);
    free(reg);
}

ps_registry *
ps_registry_scope_find(const char *name, size_t len, int create)
{
    uint64_t h;
    ps_hlink *l = NULL;
    ps_registry *reg;

    if (len > PS_MAX_CHANNEL)
        return NULL;
    h = ps_hash(name, len);
    if (scope_tab.buckets != NULL)
        l = scope_tab.buckets[h & scope_tab.mask];
    for (; l != NULL; l = l->next) {
        reg = (ps_registry *)l;
        if (l->hash == h && reg->name_len == len &&
            memcmp(reg->name, name, len) == 0)
            return reg;
    }
    if (!create)
        return NULL;
    reg = calloc(1, sizeof *reg + len + 1);
    if (reg == NULL)
        return NULL;
    reg->link.hash = h;
    reg->permanent = len == strlen(PS_DEFAULT_SCOPE) &&
                     memcmp(name, PS_DEFAULT_SCOPE, len) == 0;
    reg->name_len = (uint32_t)len;
    memcpy(reg->name, name, len);
    if (htab_insert(&scope_tab, &reg->link) != 0) {
        free(reg);
        return NULL;
    }
    reg->prev = scopes_last;
    if (scopes_last != NULL)
        scopes_last->next = reg;
    else
        scopes = reg;
    scopes_last = reg;
    return reg;
}

ps_registry *
ps_registry_scope_acquire(const char *name, size_t len)
{
    ps_registry *reg;

    ps_registry_lock();
    reg = ps_registry_scope_find(name, len, 1);
    if (reg != NULL)
        reg->refs++;
    ps_registry_unlock();
    return reg;
}

void
ps_registry_scope_release(ps_registry *reg)
{
    ps_registry_lock();
    reg->refs--;
    scope_maybe_free(reg);
    ps_registry_unlock();
}

const char *
ps_registry_name(const ps_registry *reg, uint32_t *len)
{
    *len = reg->name_len;
    return reg->name;
}


/* ---- events ---- */

static ps_rmsg *
event_new(const char *topic, ps_node *node, uint64_t id,
          const char *ch, size_t len)
{
    return ps_rmsg_new(PS_RMSG_EVENT, node, id, ch, (uint32_t)len,
                       topic, (uint32_t)strlen(topic), NULL, 0);
}

/* Owner side: push an event item to mb, finishing drops through f. */
static void
event_push_owner(ps_fanout *f, ps_mailbox *mb, ps_rmsg *m)
{
    void *dropped;
    int rc;

    /* A glue item cannot be released here (that may run code that takes
     * the registry lock): room for it in the bag comes first, and without
     * it the event is dropped and counted. */
    if (mb->capacity && ps_fanout_reserve(f) != 0) {
        atomic_fetch_add_explicit(&mb->dropped, 1, memory_order_relaxed);
        return;
    }
    ps_rmsg_incref(m);
    rc = ps_mailbox_push(mb, ps_item_from_rmsg(m), &dropped);
    if (rc == PS_ECLOSED || rc == PS_ENOMEM) {
        ps_rmsg_decref(m);
        return;
    }
    if (dropped != NULL) {
        if (ps_item_rmsg(dropped))
            ps_rmsg_decref(ps_item_rmsg(dropped));
        else
            (void)ps_fanout_add_dropped(f, dropped);    /* reserved */
    }
    if (rc == PS_ESLOW)
        (void)ps_fanout_add_slow(f, mb);                /* reserved */
}

/*
 * Tell the watchers of channel c (may be NULL) and of the scope about a
 * join or leave of (node, id).  f != NULL: owner side; f == NULL: the I/O
 * thread's remote side.
 */
static void
notify(ps_registry *reg, ps_channel *c, const char *ch, size_t len,
       const char *topic, ps_node *node, uint64_t id, ps_fanout *f)
{
    uint32_t nw = c ? c->nwatch : 0;
    ps_rmsg *m;

    if (nw == 0 && reg->swatch.n == 0)
        return;
    m = event_new(topic, node, id, ch, len);
    if (m == NULL)
        return;     /* out of memory: the event is lost, the join is not */
    for (uint32_t i = 0; i < nw + reg->swatch.n; i++) {
        ps_mailbox *w = i < nw ? c->watchers[i] : reg->swatch.v[i - nw];

        if (f)
            event_push_owner(f, w, m);
        else
            ps_mailbox_push_remote(w, m);
    }
    ps_rmsg_decref(m);
}

/* ---- fan-out bag ---- */

/* Room for one more pointer in a bag's array, whose first
 * PS_FANOUT_INLINE slots are inl. */
static int
bag_grow(void ***v, void **inl, uint32_t n, uint32_t *cap)
{
    void **nv;

    if (n < *cap)
        return 0;
    if (*v == NULL) {
        *v = inl;
        *cap = PS_FANOUT_INLINE;
        return 0;
    }
    if (*cap > UINT32_MAX / 2)
        return PS_ENOMEM;
    nv = malloc(sizeof *nv * *cap * 2);
    if (nv == NULL)
        return PS_ENOMEM;
    memcpy(nv, *v, sizeof *nv * n);
    if (*v != inl)
        free(*v);
    *v = nv;
    *cap *= 2;
    return 0;
}

static int
bag_grow_dropped(ps_fanout *f)
{
    return bag_grow(&f->dropped, f->dropped_inline, f->ndropped,
                    &f->capdropped);
}

static int
bag_grow_slow(ps_fanout *f)
{
    return bag_grow((void ***)&f->slow, (void **)f->slow_inline, f->nslow,
                    &f->capslow);
}

int
ps_fanout_add_dropped(ps_fanout *f, void *item)
{
    if (bag_grow_dropped(f) != 0)
        return PS_ENOMEM;
    f->dropped[f->ndropped++] = item;
    return 0;
}

int
ps_fanout_add_slow(ps_fanout *f, ps_mailbox *mb)
{
    for (uint32_t i = 0; i < f->nslow; i++) {
        if (f->slow[i] == mb)
            return 0;
    }
    if (bag_grow_slow(f) != 0)
        return PS_ENOMEM;
    f->slow[f->nslow++] = mb;
    return 0;
}

int
ps_fanout_reserve(ps_fanout *f)
{
    if (bag_grow_dropped(f) != 0 || bag_grow_slow(f) != 0)
        return PS_ENOMEM;
    return 0;
}

void
ps_fanout_fini(ps_fanout *f)
{
    if (f->dropped != f->dropped_inline)
        free(f->dropped);
    if (f->slow != f->slow_inline)
        free(f->slow);
    f->dropped = NULL;
    f->slow = NULL;
    f->ndropped = f->capdropped = f->nslow = f->capslow = 0;
}

/* ---- the pid table ---- */

static inline uint32_t
pid_slot(uint64_t id)
{
    return (uint32_t)((id * 0x9e3779b97f4a7c15ULL) >> 32) & pids_mask;
}

static int
pids_resize(uint32_t nsize)
{
    ps_mailbox **old = pids;
    uint32_t osize = pids ? pids_mask + 1 : 0;

    pids = calloc(nsize, sizeof *pids);
    if (pids == NULL) {
        pids = old;
        return PS_ENOMEM;
    }
    pids_mask = nsize - 1;
    for (uint32_t i = 0; i < osize; i++) {
        if (old[i] != NULL) {
            uint32_t j = pid_slot(old[i]->id);

            while (pids[j] != NULL)
                j = (j + 1) & pids_mask;
            pids[j] = old[i];
        }
    }
    free(old);
    return 0;
}

int
ps_registry_add_mailbox(ps_mailbox *mb)
{
    int rc = 0;
    uint32_t j;

    ps_registry_lock();
    if (pids == NULL || pids_count + 1 > (pids_mask + 1) / 2)
        rc = pids_resize(pids ? (pids_mask + 1) * 2 : 64);
    if (rc == 0) {
        j = pid_slot(mb->id);
        while (pids[j] != NULL)
            j = (j + 1) & pids_mask;
        pids[j] = mb;
        pids_count++;
    }
    ps_registry_unlock();
    return rc;
}

ps_mailbox *
ps_registry_mailbox(uint64_t id)
{
    uint32_t j;

    if (pids == NULL)
        return NULL;
    for (j = pid_slot(id); pids[j] != NULL; j = (j + 1) & pids_mask) {
        if (pids[j]->id == id)
            return pids[j];
    }
    return NULL;
}

/* Lock held: delete mb from the pid table, shifting its run back. */
static void
pids_delete(ps_mailbox *mb)
{
    uint32_t i, j, k;

    if (pids == NULL)
        return;
    for (i = pid_slot(mb->id); pids[i] != mb; i = (i + 1) & pids_mask) {
        if (pids[i] == NULL)
            return;
    }
    pids[i] = NULL;
    pids_count--;
    for (j = (i + 1) & pids_mask; pids[j] != NULL;
         j = (j + 1) & pids_mask) {
        k = pid_slot(pids[j]->id);
        /* Move pids[j] into the hole unless its home lies in (i, j]. */
        if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
            pids[i] = pids[j];
            pids[j] = NULL;
            i = j;
        }
    }
    if (pids_count == 0) {
        free(pids);
        pids = NULL;
        pids_mask = 0;
    }
}

/* ---- local membership ---- */

/* Lock held: remove membership k of mb, keeping both indexes right. */
static void
unlink_membership(ps_mailbox *mb, uint32_t k)
{
    ps_channel *c = mb->mships[k].ch;
    uint32_t i = mb->mships[k].idx;
    ps_member last = c->members[--c->n];
    ps_mship lastm;

    if (i != c->n) {
        c->members[i] = last;
        last.mb->mships[last.back].idx = i;
    }
    lastm = mb->mships[--mb->nmships];
    if (k != mb->nmships) {
        mb->mships[k] = lastm;
        lastm.ch->members[lastm.idx].back = k;
    }
    shrink((void **)&c->members, c->n, &c->cap, sizeof *c->members);
}

/* Lock held: a local membership changed; tell the cluster and watchers. */
static void
local_changed(ps_channel *c, ps_mailbox *mb, int delta, ps_fanout *f)
{
    if (hooks.local_change)
        hooks.local_change(hooks.arg, c->reg, c->name, c->name_len,
                           mb->id, delta);
    notify(c->reg, c, c->name, c->name_len, delta > 0 ? "join" : "leave",
           ps_node_local(), mb->id, f);
}

/* Lock held: how many times mb is a member of c, counted up to
 * PS_MAX_JOINS in the shorter of the two lists. */
static uint32_t
joins_of(ps_channel *c, ps_mailbox *mb)
{
    uint32_t n = 0;

    if (c->n < mb->nmships) {
        for (uint32_t i = 0; i < c->n && n < PS_MAX_JOINS; i++)
            n += c->members[i].mb == mb;
    } else {
        for (uint32_t k = 0; k < mb->nmships && n < PS_MAX_JOINS; k++)
            n += mb->mships[k].ch == c;
    }
    return n;
}

int
ps_registry_join(ps_registry *reg, const char *ch, size_t len,
                 ps_mailbox *mb, ps_fanout *f)
{
    ps_channel *c;
    int rc = PS_ENOMEM;

    if (len > PS_MAX_CHANNEL)
        return PS_ENAMETOOLONG;
    if (grow((void **)&mb->mships, mb->nmships, &mb->cap_mships,
             sizeof *mb->mships) != 0)
        return PS_ENOMEM;

    ps_registry_lock();
    c = local_get(reg, ch, len);
    if (c == NULL)
        goto out;
    if (joins_of(c, mb) >= PS_MAX_JOINS) {
        rc = PS_EJOINS;
        goto out;
    }
    if (grow((void **)&c->members, c->n, &c->cap, sizeof *c->members)) {
        local_maybe_free(c);
        goto out;
    }
    c->members[c->n] = (ps_member){ mb, mb->nmships };
    mb->mships[mb->nmships++] = (ps_mship){ c, c->n };
    c->n++;
    local_changed(c, mb, +1, f);
    rc = 0;
out:
    ps_registry_unlock();
    return rc;
}

int
ps_registry_leave(ps_registry *reg, const char *ch, size_t len,
                  ps_mailbox *mb, ps_fanout *f)
{
    ps_channel *c = ps_registry_find(reg, ch, len);
    int rc = PS_ENOTJOINED;
    uint32_t k = 0;

    if (c == NULL)
        return PS_ENOTJOINED;

    ps_registry_lock();
    /*
     * Any one of mb's memberships of c will do: they are alike.  Scan the
     * shorter of the two lists, so that a mailbox in 10,000 channels
     * leaving them all, or 10,000 mailboxes leaving one channel, stays
     * linear; only a mailbox in many channels leaving a crowded one pays
     * min(channels, members).
     */
    if (c->n < mb->nmships) {
        for (uint32_t i = c->n; i-- > 0;) {
            if (c->members[i].mb == mb) {
                k = c->members[i].back;
                rc = 0;
                break;
            }
        }
    } else {
        for (k = mb->nmships; k-- > 0;) {
            if (mb->mships[k].ch == c) {
                rc = 0;
                break;
            }
        }
    }
    if (rc == 0) {
        unlink_membership(mb, k);
        local_changed(c, mb, -1, f);
        local_maybe_free(c);
    }
    ps_registry_unlock();
    return rc;
}

ps_channel *
ps_registry_find(ps_registry *reg, const char *ch, size_t len)
{
    if (len > PS_MAX_CHANNEL)
        return NULL;
    return ctab_find(&reg->local, ps_hash(ch, len), ch, len);
}

ps_channel *
ps_registry_find_remote(ps_registry *reg, const char *ch, size_t len)
{
    if (len > PS_MAX_CHANNEL)
        return NULL;
    return ctab_find(&reg->remote, ps_hash(ch, len), ch, len);
}

/* ---- watchers ---- */

int
ps_registry_watch(ps_registry *reg, const char *ch, size_t len,
                  ps_mailbox *mb)
{
    ps_channel *c;
    int rc = PS_ENOMEM;

    if (ch != NULL && len > PS_MAX_CHANNEL)
        return PS_ENAMETOOLONG;

    ps_registry_lock();
    if (ch == NULL) {
        rc = mbvec_add(&reg->swatch, mb);
    } else if ((c = local_get(reg, ch, len)) != NULL) {
        rc = grow((void **)&c->watchers, c->nwatch, &c->capwatch,
                  sizeof *c->watchers);
        if (rc == 0)
            c->watchers[c->nwatch++] = mb;
        else
            local_maybe_free(c);
    }
    if (rc == 0)
        mb->nmonitors++;
    ps_registry_unlock();
    return rc;
}

/* Lock held: drop one watch of c by mb.  0 or PS_ENOTJOINED. */
static int
channel_unwatch(ps_channel *c, ps_mailbox *mb)
{
    for (uint32_t i = 0; i < c->nwatch; i++) {
        if (c->watchers[i] == mb) {
            c->watchers[i] = c->watchers[--c->nwatch];
            shrink((void **)&c->watchers, c->nwatch, &c->capwatch,
                   sizeof *c->watchers);
            mb->nmonitors--;
            local_maybe_free(c);
            return 0;
        }
    }
    return PS_ENOTJOINED;
}

int
ps_registry_unwatch(ps_registry *reg, const char *ch, size_t len,
                    ps_mailbox *mb)
{
    ps_channel *c;
    int rc = PS_ENOTJOINED;

    ps_registry_lock();
    if (ch == NULL) {
        rc = mbvec_del(&reg->swatch, mb);
        if (rc == 0)
            mb->nmonitors--;
    } else if ((c = ps_registry_find(reg, ch, len)) != NULL) {
        rc = channel_unwatch(c, mb);
    }
    ps_registry_unlock();
    return rc;
}

int
ps_registry_watch_nodes(ps_mailbox *mb)
{
    int rc;

    ps_registry_lock();
    rc = mbvec_add(&node_watchers, mb);
    if (rc == 0)
        mb->nmonitors++;
    ps_registry_unlock();
    return rc;
}

int
ps_registry_unwatch_nodes(ps_mailbox *mb)
{
    int rc;

    ps_registry_lock();
    rc = mbvec_del(&node_watchers, mb);
    if (rc == 0)
        mb->nmonitors--;
    ps_registry_unlock();
    return rc;
}

void
ps_registry_node_event(ps_node *node, int up)
{
    const char *topic = up ? "nodeup" : "nodedown";
    ps_rmsg *m;

    if (node_watchers.n == 0)
        return;
    m = ps_rmsg_new(PS_RMSG_EVENT, node, 0, NULL, 0, topic,
                    (uint32_t)strlen(topic), NULL, 0);
    if (m == NULL)
        return;
    for (uint32_t i = 0; i < node_watchers.n; i++)
        ps_mailbox_push_remote(node_watchers.v[i], m);
    ps_rmsg_decref(m);
}

/* Lock held: remove every watch mb holds, in every scope. */
static void
unwatch_all(ps_mailbox *mb)
{
    ps_registry *reg, *next;

    for (reg = scopes; reg && mb->nmonitors; reg = next) {
        ps_channel **found = NULL;
        uint32_t nfound = 0, capfound = 0;

        next = reg->next;

        while (mbvec_del(&reg->swatch, mb) == 0)
            mb->nmonitors--;
        /* Collect first: unwatching may free channels and resize the
         * table under the walk. */
        for (uint32_t b = 0; reg->local.buckets && b <= reg->local.mask;
             b++) {
            for (ps_channel *c = chan(reg->local.buckets[b]); c;
                 c = chan(c->link.next)) {
                for (uint32_t i = 0; i < c->nwatch; i++) {
                    if (c->watchers[i] == mb &&
                        grow((void **)&found, nfound, &capfound,
                             sizeof *found) == 0) {
                        found[nfound++] = c;
                        break;
                    }
                }
            }
        }
        for (uint32_t i = 0; i < nfound; i++) {
            uint32_t times = 0;

            for (uint32_t j = 0; j < found[i]->nwatch; j++)
                times += found[i]->watchers[j] == mb;
            /* The last call may free the channel: count first. */
            while (times-- > 0)
                channel_unwatch(found[i], mb);
        }
        free(found);
        scope_maybe_free(reg);
    }
    while (mb->nmonitors && mbvec_del(&node_watchers, mb) == 0)
        mb->nmonitors--;
}

void
ps_registry_remove_mailbox(ps_mailbox *mb, ps_fanout *f)
{
    ps_registry_lock();
    while (mb->nmships > 0) {
        ps_channel *c = mb->mships[mb->nmships - 1].ch;
        ps_registry *reg = c->reg;

        unlink_membership(mb, mb->nmships - 1);
        local_changed(c, mb, -1, f);
        local_maybe_free(c);
        scope_maybe_free(reg);
    }
    if (mb->nmonitors)
        unwatch_all(mb);
    pids_delete(mb);
    ps_registry_unlock();
}

/* ---- remote membership (lock held, I/O thread) ---- */

static inline uint32_t
rslot(const ps_channel *c, const ps_node *node, uint64_t id)
{
    uint64_t h = ((uint64_t)(uintptr_t)node ^ (id * 0x9e3779b97f4a7c15ULL));

    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    return (uint32_t)(h >> 32) & (c->rcap - 1);
}

/* The slot of (node, id) or of the free slot where it would go. */
static ps_rmember *
rfind(ps_channel *c, ps_node *node, uint64_t id)
{
    uint32_t j = rslot(c, node, id);

    while (c->rmembers[j].node != NULL &&
           !(c->rmembers[j].node == node && c->rmembers[j].id == id))
        j = (j + 1) & (c->rcap - 1);
    return &c->rmembers[j];
}

/* Rebuild the pid set of c with nsize slots, keeping only nodes != skip. */
static int
rrehash(ps_channel *c, uint32_t nsize, ps_node *skip)
{
    ps_rmember *old = c->rmembers;
    uint32_t ocap = c->rcap;

    if (nsize == 0) {
        c->rmembers = NULL;
        c->rcap = c->rn = 0;
        free(old);
        return 0;
    }
    c->rmembers = calloc(nsize, sizeof *c->rmembers);
    if (c->rmembers == NULL) {
        c->rmembers = old;
        return PS_ENOMEM;
    }
    c->rcap = nsize;
    c->rn = 0;
    for (uint32_t i = 0; i < ocap; i++) {
        if (old[i].node != NULL && old[i].node != skip) {
            *rfind(c, old[i].node, old[i].id) = old[i];
            c->rn++;
        }
    }
    free(old);
    return 0;
}

/* Delete the pid at slot e, shifting its probe run back. */
static void
rdelete(ps_channel *c, ps_rmember *e)
{
    uint32_t i = (uint32_t)(e - c->rmembers), j, k;
    uint32_t mask = c->rcap - 1;

    c->rmembers[i].node = NULL;
    c->rn--;
    for (j = (i + 1) & mask; c->rmembers[j].node != NULL;
         j = (j + 1) & mask) {
        k = rslot(c, c->rmembers[j].node, c->rmembers[j].id);
        if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
            c->rmembers[i] = c->rmembers[j];
            c->rmembers[j].node = NULL;
            i = j;
        }
    }
}

/* Adjust node's total in c->rnodes by delta, dropping it at zero. */
static int
rnode_add(ps_channel *c, ps_node *node, int64_t delta)
{
    for (uint32_t i = 0; i < c->nrnodes; i++) {
        if (c->rnodes[i].node == node) {
            c->rnodes[i].count =
                (uint64_t)((int64_t)c->rnodes[i].count + delta);
            if (c->rnodes[i].count == 0)
                c->rnodes[i] = c->rnodes[--c->nrnodes];
            return 0;
        }
    }
    if (delta <= 0)
        return 0;
    if (grow((void **)&c->rnodes, c->nrnodes, &c->caprnodes,
             sizeof *c->rnodes) != 0)
        return PS_ENOMEM;
    c->rnodes[c->nrnodes++] = (ps_rnode){ node, (uint64_t)delta };
    return 0;
}

static void
remote_maybe_free(ps_registry *reg, ps_channel *c)
{
    if (c->rn == 0) {
        htab_remove(&reg->remote, &c->link);
        channel_free(c);
    }
}

/*
 * A remote pid's join count saturates at PS_MAX_JOINS, the most a local
 * mailbox can have: SYNC entries carry counts up to 2^31 each, and
 * neither a wrapped counter nor get_members() listing a pid a billion
 * times is acceptable.
 */
#define REMOTE_COUNT_MAX    ((uint32_t)PS_MAX_JOINS)

/*
 * Tell watchers about |delta| joins or leaves of (node, id): one event
 * each, at most REMOTE_COUNT_MAX of them since no count exceeds it.
 */
static void
remote_notify(ps_registry *reg, const char *ch, size_t len, ps_node *node,
              uint64_t id, int64_t delta)
{
    ps_channel *lc = ctab_find(&reg->local, ps_hash(ch, len), ch, len);
    const char *topic = delta > 0 ? "join" : "leave";

    if (reg->swatch.n == 0 && (lc == NULL || lc->nwatch == 0))
        return;
    for (int64_t n = delta > 0 ? delta : -delta; n > 0; n--)
        notify(reg, lc, ch, len, topic, node, id, NULL);
}

static int
remote_change(ps_registry *reg, const char *ch, size_t len, ps_node *node,
              uint64_t id, int32_t delta)
{
    uint64_t h;
    ps_channel *c;
    ps_rmember *e;

    if (len > PS_MAX_CHANNEL)
        return PS_ENAMETOOLONG;
    h = ps_hash(ch, len);
    c = ctab_find(&reg->remote, h, ch, len);
    if (c == NULL) {
        if (delta <= 0)
            return 0;
        c = channel_new(reg, h, ch, len);
        if (c == NULL)
            return PS_ENOMEM;
        if (htab_insert(&reg->remote, &c->link) != 0) {
            channel_free(c);
            return PS_ENOMEM;
        }
    }
    if ((c->rcap == 0 || (c->rn + 1) * 4 > c->rcap * 3) &&
        rrehash(c, c->rcap ? c->rcap * 2 : 8, NULL) != 0) {
        remote_maybe_free(reg, c);
        return PS_ENOMEM;
    }

    e = rfind(c, node, id);
    if (e->node == NULL) {
        if (delta <= 0) {
            remote_maybe_free(reg, c);
            return 0;
        }
        if ((uint32_t)delta > REMOTE_COUNT_MAX)
            delta = (int32_t)REMOTE_COUNT_MAX;
        if (rnode_add(c, node, delta) != 0) {
            remote_maybe_free(reg, c);
            return PS_ENOMEM;
        }
        *e = (ps_rmember){ node, id, (uint32_t)delta };
        c->rn++;
    } else {
        if (delta < 0 && (uint32_t)-delta > e->count)
            delta = -(int32_t)e->count;
        if (delta > 0 && (uint32_t)delta > REMOTE_COUNT_MAX - e->count)
            delta = (int32_t)(REMOTE_COUNT_MAX - e->count);
        rnode_add(c, node, delta);
        e->count = (uint32_t)((int64_t)e->count + delta);
        if (e->count == 0)
            rdelete(c, e);
    }
    remote_maybe_free(reg, c);
    remote_notify(reg, ch, len, node, id, delta);
    return 0;
}

int
ps_registry_remote_change(ps_registry *reg, const char *ch, size_t len,
                          ps_node *node, uint64_t id, int32_t delta)
{
    int rc = remote_change(reg, ch, len, node, id, delta);

    scope_maybe_free(reg);
    return rc;
}

/* Forget node's pids in one remote channel, telling watchers. */
static void
drop_node_in(ps_registry *reg, ps_channel *c, ps_node *node)
{
    for (uint32_t i = 0; i < c->nrnodes; i++) {
        if (c->rnodes[i].node != node)
            continue;
        for (uint32_t j = 0; j < c->rcap; j++) {
            ps_rmember *e = &c->rmembers[j];

            if (e->node == node)
                remote_notify(reg, c->name, c->name_len, node, e->id,
                              -(int64_t)e->count);
        }
        c->rnodes[i] = c->rnodes[--c->nrnodes];
        if (rrehash(c, c->rcap, node) != 0) {
            /* Out of memory: delete in place, slot by slot. */
            for (uint32_t j = 0; j < c->rcap; j++) {
                while (c->rmembers[j].node == node)
                    rdelete(c, &c->rmembers[j]);
            }
        }
        return;
    }
}

void
ps_registry_remote_drop_node(ps_node *node)
{
    ps_registry *reg, *next;

    for (reg = scopes; reg != NULL; reg = next) {
        ps_channel **all;
        uint32_t n = 0;

        next = reg->next;
        if (reg->remote.count == 0)
            continue;
        /* Snapshot the channels: freeing them resizes the table. */
        all = malloc(sizeof *all * reg->remote.count);
        if (all == NULL)
            continue;
        for (uint32_t b = 0; b <= reg->remote.mask; b++) {
            for (ps_channel *c = chan(reg->remote.buckets[b]); c;
                 c = chan(c->link.next))
                all[n++] = c;
        }
        for (uint32_t i = 0; i < n; i++) {
            drop_node_in(reg, all[i], node);
            remote_maybe_free(reg, all[i]);
        }
        free(all);
        scope_maybe_free(reg);
    }
}

uint32_t
ps_registry_remote_nodes(ps_registry *reg, const char *ch, size_t len,
                         ps_node **out, uint32_t max)
{
    ps_channel *c = ps_registry_find_remote(reg, ch, len);
    uint32_t n = 0;

    for (uint32_t i = 0; c != NULL && i < c->nrnodes && n < max; i++)
        out[n++] = c->rnodes[i].node;
    return n;
}

uint32_t
ps_registry_deliver_remote(ps_channel *c, ps_rmsg *m)
{
    uint32_t n = 0;

    for (uint32_t i = 0; c != NULL && i < c->n; i++) {
        if (ps_mailbox_push_remote(c->members[i].mb, m) == 0)
            n++;
    }
    return n;
}

int
ps_registry_foreach_name(ps_registry *reg,
                         int (*fn)(void *arg, const char *ch, uint32_t len),
                         void *arg)
{
    int rc;

    for (uint32_t b = 0; reg->local.buckets && b <= reg->local.mask; b++) {
        for (ps_channel *c = chan(reg->local.buckets[b]); c;
             c = chan(c->link.next)) {
            if (c->n > 0 && (rc = fn(arg, c->name, c->name_len)) != 0)
                return rc;
        }
    }
    for (uint32_t b = 0; reg->remote.buckets && b <= reg->remote.mask;
         b++) {
        for (ps_channel *c = chan(reg->remote.buckets[b]); c;
             c = chan(c->link.next)) {
            ps_channel *lc = ctab_find(&reg->local, c->link.hash, c->name,
                                       c->name_len);

            if (lc != NULL && lc->n > 0)
                continue;   /* already named above */
            if ((rc = fn(arg, c->name, c->name_len)) != 0)
                return rc;
        }
    }
    return 0;
}

int
ps_registry_foreach_local(int (*fn)(void *arg, ps_registry *reg,
                                    const char *ch, uint32_t len,
                                    uint64_t id, uint32_t count),
                          void *arg)
{
    int rc;

    for (ps_registry *reg = scopes; reg != NULL; reg = reg->next) {
        for (uint32_t b = 0; reg->local.buckets && b <= reg->local.mask;
             b++) {
            for (ps_channel *c = chan(reg->local.buckets[b]); c;
                 c = chan(c->link.next)) {
                for (uint32_t i = 0; i < c->n; i++) {
                    rc = fn(arg, reg, c->name, c->name_len,
                            c->members[i].mb->id, 1);
                    if (rc != 0)
                        return rc;
                }
            }
        }
    }
    return 0;
}

uint64_t
ps_registry_channel_count(void)
{
    uint64_t n = 0;

    ps_registry_lock();
    for (ps_registry *reg = scopes; reg != NULL; reg = reg->next)
        n += reg->local.count + reg->remote.count;
    ps_registry_unlock();
    return n;
}

uint64_t
ps_registry_scope_count(void)
{
    uint64_t n;

    ps_registry_lock();
    n = scope_tab.count;
    ps_registry_unlock();
    return n;
}

uint64_t
ps_registry_mailbox_count(void)
{
    uint64_t n;

    ps_registry_lock();
    n = pids_count;
    ps_registry_unlock();
    return n;
}
