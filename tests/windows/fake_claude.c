/* Plays Claude Code's part on Windows for scripts/test-windows.sh: runs each argument through
 * cmd.exe, as Claude Code runs the apiKeyHelper (claude.exe -> cmd.exe -> keyswitch.exe), with
 * CLAUDE_PID set to its own pid, as Claude Code sets it for hooks. Prints its pid first. */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    char env[64];
    DWORD pid = GetCurrentProcessId();
    snprintf(env, sizeof env, "CLAUDE_PID=%lu", (unsigned long)pid);
    _putenv(env);
    printf("pid %lu\n", (unsigned long)pid);
    for (int i = 1; i < argc; i++) {
        fflush(stdout);
        /* system() runs the command as `cmd.exe /c ...` (COMSPEC). */
        int rc = system(argv[i]);
        if (rc != 0) {
            fprintf(stderr, "fake_claude: `%s` exited %d\n", argv[i], rc);
            return 1;
        }
    }
    return 0;
}
