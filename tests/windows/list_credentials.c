/* Lists the Credential Manager's generic credentials as "TARGET<TAB>SECRET" lines, for
 * scripts/test-windows.sh to see what keyswitch.exe really stored (fake test keys only). */
#include <windows.h>
#include <wincred.h>
#include <stdio.h>

int main(void) {
    DWORD count = 0;
    PCREDENTIALA *creds = NULL;
    if (!CredEnumerateA(NULL, 0, &count, &creds)) {
        return GetLastError() == ERROR_NOT_FOUND ? 0 : 1;
    }
    for (DWORD i = 0; i < count; i++) {
        if (creds[i]->Type != CRED_TYPE_GENERIC) continue;
        printf("%s\t%.*s\n", creds[i]->TargetName, (int)creds[i]->CredentialBlobSize,
               (const char *)creds[i]->CredentialBlob);
    }
    CredFree(creds);
    return 0;
}
