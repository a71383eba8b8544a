/*
 * An independent load client, to check that `tcpfork bench` is not the bottleneck: THREADS threads
 * run TOTAL connections, each sending SIZE bytes, half-closing and reading the echo until EOF.
 *   loadclient PORT TOTAL THREADS SIZE   -> prints "N ok, M failed, X conn/s"
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port, size;
static long total;
static atomic_long issued, ok, failed;

static void *worker(void *arg) {
    (void)arg;
    char out[65536], in[65536];
    memset(out, 'x', sizeof out);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    while (atomic_fetch_add(&issued, 1) < total) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { atomic_fetch_add(&failed, 1); if (fd >= 0) close(fd); continue; }
        ssize_t sent = 0, got = 0, n;
        while (sent < size && (n = send(fd, out + sent, size - sent, MSG_NOSIGNAL)) > 0) sent += n;
        shutdown(fd, SHUT_WR);
        while ((n = recv(fd, in, sizeof in, 0)) > 0) got += n;
        close(fd);
        if (sent == size && got == size) atomic_fetch_add(&ok, 1); else atomic_fetch_add(&failed, 1);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: loadclient PORT TOTAL THREADS SIZE\n"); return 2; }
    port = atoi(argv[1]); total = atol(argv[2]); int threads = atoi(argv[3]); size = atoi(argv[4]);
    pthread_t t[256];
    struct timespec s, e;
    clock_gettime(CLOCK_MONOTONIC, &s);
    for (int i = 0; i < threads && i < 256; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < threads && i < 256; i++) pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &e);
    double secs = (double)(e.tv_sec - s.tv_sec) + (double)(e.tv_nsec - s.tv_nsec) / 1e9;
    printf("%ld ok, %ld failed, %.1f conn/s\n", (long)ok, (long)failed, (double)ok / secs);
    return failed ? 1 : 0;
}
