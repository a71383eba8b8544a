/* no-close-range PROGRAM [ARGS...]: runs PROGRAM where close_range(2) fails with ENOSYS, as on Linux
 * before 5.9 or under an older container seccomp profile. The tests run tcpfork under it to hold the
 * fallback that closes each descriptor /proc/self/fd lists. close_range is syscall 436 on every
 * architecture (the generic table). */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 436, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = { sizeof filter / sizeof filter[0], filter };
    if (argc < 2 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
        perror("no-close-range");
        return 126;
    }
    execvp(argv[1], argv + 1);
    perror("no-close-range: exec");
    return 127;
}
