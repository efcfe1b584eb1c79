// pointer-chase: loads whose address is the previous load's result: a linked list whose nodes lie in a
// shuffled order in memory, and an unbalanced binary search tree built from random keys with malloc and
// searched (each step a load, a compare and a branch that goes either way).
#include "real-program.h"

struct node {
  struct node *next;
  uint64_t value;
};

struct tree {
  struct tree *left, *right;
  uint64_t key;
};

static struct tree *insert(struct tree *root, uint64_t key) {
  struct tree **p = &root;
  while (*p) p = key < (*p)->key ? &(*p)->left : &(*p)->right;
  *p = calloc(1, sizeof **p);
  (*p)->key = key;
  return root;
}

static int contains(const struct tree *t, uint64_t key) {
  while (t && t->key != key) t = key < t->key ? t->left : t->right;
  return t != NULL;
}

static void release(struct tree *t) {
  while (t) {
    release(t->left);
    struct tree *r = t->right;
    free(t);
    t = r;
  }
}

int main(int argc, char **argv) {
  unsigned scale = rp_scale(argc, argv);
  struct rp_timer t = rp_begin();
  uint64_t seed = 2024, sum = 0;
  enum { N = 1 << 17 };
  struct node *nodes = malloc(N * sizeof *nodes);
  uint32_t *order = malloc(N * sizeof *order);
  for (uint32_t i = 0; i < N; i++) order[i] = i;
  for (uint32_t i = N - 1; i > 0; i--) {
    uint32_t j = (uint32_t)(rp_rand(&seed) % (i + 1)), tmp = order[i];
    order[i] = order[j];
    order[j] = tmp;
  }
  for (uint32_t i = 0; i < N; i++) {
    nodes[order[i]].next = &nodes[order[(i + 1) % N]];
    nodes[order[i]].value = i;
  }
  const struct node *p = &nodes[order[0]];
  for (unsigned r = 0; r < 16 * scale; r++)
    for (uint32_t i = 0; i < N; i++) {
      sum += p->value;
      p = p->next;
    }
  for (unsigned r = 0; r < 3 * scale; r++) {
    struct tree *root = NULL;
    uint64_t s = seed;
    for (int i = 0; i < 60000; i++) root = insert(root, rp_rand(&seed) % 1000000);
    for (int i = 0; i < 120000; i++) sum += contains(root, rp_rand(&s) % 1000000 + (i & 1));
    release(root);
  }
  free(order);
  free(nodes);
  rp_end("pointer-chase", t, sum);
  return 0;
}
