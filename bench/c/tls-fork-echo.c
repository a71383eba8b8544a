/*
 * The floor of the fork-per-connection TLS model: what a TLS echo costs with no runtime at all.
 *   tls-fork-echo CERT.pem KEY.pem   -> prints "Listening for connections on port N" (127.0.0.1, port 0)
 * The parent loads the certificate and key once into one SSL_CTX; for each connection it forks, and the
 * child makes an SSL on the inherited context, handshakes, echoes until the client's close_notify or EOF,
 * sends its own close_notify and a FIN, and exits. Session tickets are on (OpenSSL's default): the ticket
 * keys are made with the SSL_CTX in the parent, so every child can resume a session another one issued.
 * The parent reaps without blocking after each accept. Built by bench/tls-compare:
 *   gcc -O2 -o tls-fork-echo tls-fork-echo.c -lssl -lcrypto
 */
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void serve(SSL_CTX *ctx, int fd) {
    int one = 1;
    char buf[16384];
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* the tickets after the handshake must not wait for an ACK */
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 || SSL_accept(ssl) != 1) {
        _exit(1);
    }
    int n;
    while ((n = SSL_read(ssl, buf, sizeof buf)) > 0) {
        if (SSL_write(ssl, buf, n) != n) {
            _exit(1);
        }
    }
    SSL_shutdown(ssl);
    shutdown(fd, SHUT_WR);
    _exit(0);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: tls-fork-echo CERT.pem KEY.pem\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || SSL_CTX_use_certificate_chain_file(ctx, argv[1]) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    /* A session cache in one child's memory would serve no other child: resumption is by ticket only. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (listener < 0 || setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listener, 1024) < 0 ||
        getsockname(listener, (struct sockaddr *)&addr, &len) < 0) {
        perror("tls-fork-echo: listen");
        return 1;
    }
    printf("Listening for connections on port %d\n", ntohs(addr.sin_port));
    fflush(stdout);

    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EINTR && errno != ECONNABORTED) {
                perror("tls-fork-echo: accept");
            }
        } else {
            pid_t pid = fork();
            if (pid == 0) {
                close(listener);
                serve(ctx, fd);
            }
            if (pid < 0) {
                perror("tls-fork-echo: fork");
            }
            close(fd);
        }
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
    }
}
