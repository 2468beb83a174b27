/* modeldir.c: a Hugging Face / mlx-lm model directory as one tensor name space (FORMATS.md §2.1).
 *
 * Layout read:
 *   DIR/config.json                      optional; must be a strict JSON object when present
 *   DIR/model.safetensors.index.json     optional: {"metadata": {...}, "weight_map": {NAME: FILE}}
 *   DIR/model*.safetensors               the shards (model.safetensors, model-00001-of-00003...)
 *
 * Which shards: with an index, the distinct FILE values of weight_map (sorted); without one,
 * every regular entry named model*.safetensors (sorted by byte order). mlx-lm ignores the index
 * and globs; Hugging Face loads what the index names. loam accepts a directory only when both
 * readings agree, so a model never means two different things:
 *   - a FILE in weight_map must be a plain file name (no '/'), present in DIR;
 *   - every model*.safetensors in DIR must be named by the index;
 *   - every weight_map entry must point at the shard that holds the tensor, and every tensor of
 *     every shard must be listed (a stale index is an error naming the tensor and the shard).
 * Without an index, a tensor name found in two shards is an error naming both files.
 * Every shard is opened with loam_st_open (mapped and validated; data is not read), and the
 * union of their tensors is kept sorted by name for binary-search lookup.
 */
#define _POSIX_C_SOURCE 200809L
#include "json.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>

#define INDEX_NAME "model.safetensors.index.json"

typedef struct md_entry {
    const char *name; /* owned by the shard's loam_st */
    size_t shard;
    size_t index; /* in loam_st_tensor order of that shard */
} md_entry;

struct loam_modeldir {
    char *path;
    char *config; /* config.json text or NULL */
    bool has_index;
    size_t n_shards;
    loam_st **shards; /* (n_shards) */
    size_t n_tensors;
    md_entry *tensors; /* (n_tensors) sorted by name */
};

// ---- helpers ----------------------------------------------------------------------------------

static char *join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = loam__malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int is_shard_name(const char *n) {
    size_t len = strlen(n), suf = strlen(".safetensors");
    return len >= 5 + suf && strncmp(n, "model", 5) == 0 &&
           strcmp(n + len - suf, ".safetensors") == 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const md_entry *)a)->name, ((const md_entry *)b)->name);
}

static void free_strings(char **v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++) loam__free(v[i]);
    loam__free(v);
}

/* Appends a copy of s to the growing array *v (n used, *cap allocated). */
static int push_string(char ***v, size_t *n, size_t *cap, const char *s) {
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 8;
        char **nv = loam__realloc(*v, c * sizeof *nv);
        if (!nv) return -1;
        *v = nv;
        *cap = c;
    }
    char *d = loam__strdup(s);
    if (!d) return -1;
    (*v)[(*n)++] = d;
    return 0;
}

/* Sorted names of the model*.safetensors entries of dir. */
static loam_status list_shards(const char *dir, char ***out, size_t *n_out, loam_err *err) {
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (!d) return loam__fail(err, LOAM_E_IO, "%s: cannot list: %s", dir, strerror(errno));
    char **v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!is_shard_name(de->d_name)) continue;
        if (push_string(&v, &n, &cap, de->d_name) != 0) {
            closedir(d);
            free_strings(v, n);
            return loam__fail(err, LOAM_E_NOMEM, "%s: out of memory listing shards", dir);
        }
    }
    closedir(d);
    if (n) qsort(v, n, sizeof *v, cmp_str);
    *out = v;
    *n_out = n;
    return LOAM_OK;
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

// ---- the index --------------------------------------------------------------------------------

/* Parses the index into a cJSON tree and the sorted distinct shard file names. */
static loam_status read_index(const char *ipath, cJSON **root_out, const cJSON **map_out,
                              char ***files_out, size_t *n_files_out, loam_err *err) {
    *root_out = NULL;
    *map_out = NULL;
    *files_out = NULL;
    *n_files_out = 0;
    char *text = NULL;
    size_t len = 0;
    loam_status s = loam__read_file(ipath, &text, &len, err);
    if (s != LOAM_OK) return s;
    cJSON *root = NULL;
    s = loam__json_parse(text, len, ipath, &root, err);
    loam__free(text);
    if (s != LOAM_OK) return s;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return loam__fail(err, LOAM_E_FORMAT, "%s: no \"weight_map\" object", ipath);
    }
    size_t n = 0;
    for (const cJSON *c = map->child; c; c = c->next) n++;
    const char **files = loam__calloc(n + 1, sizeof *files);
    if (!files) {
        cJSON_Delete(root);
        return loam__fail(err, LOAM_E_NOMEM, "%s: out of memory", ipath);
    }
    size_t k = 0;
    for (const cJSON *c = map->child; c; c = c->next) {
        const char *f = cJSON_IsString(c) ? c->valuestring : NULL;
        if (!f || !*f || strchr(f, '/') || strcmp(f, ".") == 0 || strcmp(f, "..") == 0) {
            s = loam__fail(err, LOAM_E_FORMAT,
                           "%s: weight_map entry for tensor '%.80s' is not a plain file name",
                           ipath, c->string);
            loam__free(files);
            cJSON_Delete(root);
            return s;
        }
        files[k++] = f;
    }
    qsort(files, n, sizeof *files, cmp_str);
    char **uniq = NULL;
    size_t nu = 0, cap = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(files[i], files[i - 1]) == 0) continue;
        if (push_string(&uniq, &nu, &cap, files[i]) != 0) {
            free_strings(uniq, nu);
            loam__free(files);
            cJSON_Delete(root);
            return loam__fail(err, LOAM_E_NOMEM, "%s: out of memory", ipath);
        }
    }
    loam__free(files);
    *root_out = root;
    *map_out = map;
    *files_out = uniq;
    *n_files_out = nu;
    return LOAM_OK;
}

static const md_entry *find_entry(const loam_modeldir *md, const char *name) {
    size_t lo = 0, hi = md->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(md->tensors[mid].name, name);
        if (c == 0) return &md->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* weight_map and the shards must describe the same tensors in the same files. */
static loam_status check_index(const loam_modeldir *md, const char *ipath, const cJSON *map,
                               loam_err *err) {
    size_t n_listed = 0;
    for (const cJSON *c = map->child; c; c = c->next) {
        n_listed++;
        const md_entry *e = find_entry(md, c->string);
        if (!e)
            return loam__fail(err, LOAM_E_FORMAT,
                              "%s: maps tensor '%.80s' to %s, which does not contain it", ipath,
                              c->string, c->valuestring);
        const char *holder = base_name(loam_st_path(md->shards[e->shard]));
        if (strcmp(holder, c->valuestring) != 0)
            return loam__fail(
                err, LOAM_E_FORMAT,
                "%s: maps tensor '%.80s' to %s, which does not contain it (it is in %s)", ipath,
                c->string, c->valuestring, holder);
    }
    if (n_listed == md->n_tensors) return LOAM_OK;
    /* every listed name was found once, so some tensor is missing from the index */
    for (size_t i = 0; i < md->n_tensors; i++) {
        const md_entry *e = &md->tensors[i];
        if (!cJSON_GetObjectItemCaseSensitive(map, e->name))
            return loam__fail(err, LOAM_E_FORMAT,
                              "%s: does not list tensor '%.80s' of %s (stale index? regenerate "
                              "or delete it)",
                              ipath, e->name, base_name(loam_st_path(md->shards[e->shard])));
    }
    return LOAM_OK;
}

// ---- open / close -----------------------------------------------------------------------------

void loam_modeldir_close(loam_modeldir *md) {
    if (!md) return;
    for (size_t i = 0; i < md->n_shards; i++) loam_st_close(md->shards[i]);
    loam__free(md->shards);
    loam__free(md->tensors);
    loam__free(md->config);
    loam__free(md->path);
    loam__free(md);
}

static loam_status read_config(loam_modeldir *md, loam_err *err) {
    char *cpath = join(md->path, "config.json");
    if (!cpath) return loam__fail(err, LOAM_E_NOMEM, "%s: out of memory", md->path);
    if (!file_exists(cpath)) {
        loam__free(cpath);
        return LOAM_OK;
    }
    size_t len = 0;
    loam_status s = loam__read_file(cpath, &md->config, &len, err);
    if (s == LOAM_OK) {
        cJSON *root = NULL;
        s = loam__json_parse(md->config, len, cpath, &root, err);
        if (s == LOAM_OK && !cJSON_IsObject(root))
            s = loam__fail(err, LOAM_E_FORMAT, "%s: not a JSON object", cpath);
        cJSON_Delete(root);
    }
    loam__free(cpath);
    return s;
}

static loam_status open_shards(loam_modeldir *md, char **files, size_t n, int from_index,
                               const char *ipath, loam_err *err) {
    md->shards = loam__calloc(n + 1, sizeof *md->shards);
    if (!md->shards) return loam__fail(err, LOAM_E_NOMEM, "%s: out of memory", md->path);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        char *p = join(md->path, files[i]);
        if (!p) return loam__fail(err, LOAM_E_NOMEM, "%s: out of memory", md->path);
        if (from_index && !file_exists(p)) {
            loam_status s = loam__fail(err, LOAM_E_FORMAT, "%s: names shard %s, which is missing",
                                       ipath, files[i]);
            loam__free(p);
            return s;
        }
        loam_status s = loam_st_open(&md->shards[i], p, err);
        loam__free(p);
        if (s != LOAM_OK) return s;
        md->n_shards = i + 1;
        total += loam_st_n_tensors(md->shards[i]);
    }
    md->tensors = loam__calloc((size_t)total + 1, sizeof *md->tensors);
    if (!md->tensors) return loam__fail(err, LOAM_E_NOMEM, "%s: out of memory", md->path);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t nt = loam_st_n_tensors(md->shards[i]);
        for (size_t j = 0; j < nt; j++) {
            loam_tensor t;
            loam_st_tensor(md->shards[i], j, &t);
            md->tensors[k].name = t.name;
            md->tensors[k].shard = i;
            md->tensors[k].index = j;
            k++;
        }
    }
    md->n_tensors = k;
    qsort(md->tensors, k, sizeof *md->tensors, cmp_entry);
    for (size_t i = 1; i < k; i++) {
        const md_entry *a = &md->tensors[i - 1], *b = &md->tensors[i];
        if (strcmp(a->name, b->name) == 0) {
            size_t s0 = a->shard < b->shard ? a->shard : b->shard;
            size_t s1 = a->shard < b->shard ? b->shard : a->shard;
            return loam__fail(err, LOAM_E_FORMAT, "%s: tensor '%.80s' is in both %s and %s",
                              md->path, a->name, base_name(loam_st_path(md->shards[s0])),
                              base_name(loam_st_path(md->shards[s1])));
        }
    }
    return LOAM_OK;
}

loam_status loam_modeldir_open(loam_modeldir **out, const char *dir, loam_err *err) {
    if (!out || !dir) return loam__fail(err, LOAM_E_INVAL, "loam_modeldir_open: NULL argument");
    *out = NULL;
    struct stat sb;
    if (stat(dir, &sb) != 0) return loam__fail(err, LOAM_E_IO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return loam__fail(err, LOAM_E_IO, "%s: not a directory", dir);
    loam_modeldir *md = loam__calloc(1, sizeof *md);
    if (!md) return loam__fail(err, LOAM_E_NOMEM, "%s: out of memory", dir);
    char *ipath = NULL, **files = NULL, **globbed = NULL;
    size_t n_files = 0, n_globbed = 0;
    cJSON *index = NULL;
    const cJSON *map = NULL;
    loam_status s;
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--; /* "DIR/" names shards "DIR/x", not "DIR//x" */
    md->path = loam__strndup(dir, dl);
    ipath = md->path ? join(md->path, INDEX_NAME) : NULL;
    if (!ipath) {
        s = loam__fail(err, LOAM_E_NOMEM, "%s: out of memory", dir);
        goto fail;
    }
    s = read_config(md, err);
    if (s != LOAM_OK) goto fail;
    s = list_shards(md->path, &globbed, &n_globbed, err);
    if (s != LOAM_OK) goto fail;
    md->has_index = file_exists(ipath);
    if (md->has_index) {
        s = read_index(ipath, &index, &map, &files, &n_files, err);
        if (s != LOAM_OK) goto fail;
        for (size_t i = 0; i < n_globbed; i++) {
            if (!bsearch(&globbed[i], files, n_files, sizeof *files, cmp_str)) {
                s = loam__fail(err, LOAM_E_FORMAT,
                               "%s: %s matches model*.safetensors but is not named in %s",
                               md->path, globbed[i], INDEX_NAME);
                goto fail;
            }
        }
    } else {
        files = globbed;
        n_files = n_globbed;
        globbed = NULL;
        n_globbed = 0;
    }
    if (n_files == 0) {
        s = loam__fail(err, LOAM_E_NOTFOUND, "%s: no model*.safetensors shards", md->path);
        goto fail;
    }
    s = open_shards(md, files, n_files, md->has_index, ipath, err);
    if (s != LOAM_OK) goto fail;
    if (index) {
        s = check_index(md, ipath, map, err);
        if (s != LOAM_OK) goto fail;
    }
    cJSON_Delete(index);
    free_strings(files, n_files);
    free_strings(globbed, n_globbed);
    loam__free(ipath);
    *out = md;
    return LOAM_OK;
fail:
    cJSON_Delete(index);
    free_strings(files, n_files);
    free_strings(globbed, n_globbed);
    loam__free(ipath);
    loam_modeldir_close(md);
    return s;
}

// ---- accessors --------------------------------------------------------------------------------

const char *loam_modeldir_path(const loam_modeldir *md) { return md ? md->path : NULL; }
const char *loam_modeldir_config_text(const loam_modeldir *md) { return md ? md->config : NULL; }
bool loam_modeldir_has_index(const loam_modeldir *md) { return md && md->has_index; }
size_t loam_modeldir_n_shards(const loam_modeldir *md) { return md ? md->n_shards : 0; }

const loam_st *loam_modeldir_shard(const loam_modeldir *md, size_t i) {
    return md && i < md->n_shards ? md->shards[i] : NULL;
}

size_t loam_modeldir_n_tensors(const loam_modeldir *md) { return md ? md->n_tensors : 0; }

loam_status loam_modeldir_tensor(const loam_modeldir *md, size_t i, loam_tensor *out,
                                 size_t *shard) {
    if (!md || !out) return LOAM_E_INVAL;
    if (i >= md->n_tensors) return LOAM_E_RANGE;
    const md_entry *e = &md->tensors[i];
    if (shard) *shard = e->shard;
    return loam_st_tensor(md->shards[e->shard], e->index, out);
}

loam_status loam_modeldir_find(const loam_modeldir *md, const char *name, loam_tensor *out,
                               loam_err *err) {
    if (!md || !name) return loam__fail(err, LOAM_E_INVAL, "loam_modeldir_find: NULL argument");
    const md_entry *e = find_entry(md, name);
    if (!e) return loam__fail(err, LOAM_E_NOTFOUND, "%s: no tensor named '%.80s'", md->path, name);
    if (!out) return LOAM_OK;
    return loam_st_tensor(md->shards[e->shard], e->index, out);
}
