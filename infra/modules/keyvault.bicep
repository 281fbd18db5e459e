// The Key Vault that keeps Brook's secrets out of the site's app settings: SECRET_KEY here, the
// password-mode DATABASE_URL (keyvault-secret.bicep) and REDIS_URL (redis.bicep). The app settings hold
// Key Vault references, `@Microsoft.KeyVault(SecretUri=...)`, which App Service resolves with
// the app's user-assigned identity (the site's keyVaultReferenceIdentity). Anyone with
// contributor rights on the site reads its app settings; only the app's identity reads these
// secrets (Key Vault Secrets User on this vault, RBAC authorization).
//
// Network: App Service resolves references from the platform, and "vaults shouldn't depend on
// the app's public outbound IPs"; a restricted vault must let in the app's virtual network,
// which F1 (no VNet integration) has not. So the vault keeps its public endpoint, and Entra
// sign-in plus the one role assignment are what guard it
// (https://learn.microsoft.com/azure/app-service/app-service-key-vault-references).

@description('Vault name: 3-24 characters, letters, digits and hyphens, unique in Azure.')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags for the vault.')
param tags object = {}

@description('Principal id of the app\'s identity: the one principal that may read the secrets (Key Vault Secrets User).')
param readerPrincipalId string

@description('Log Analytics workspace that receives the vault\'s audit log (who read which secret).')
param logAnalyticsWorkspaceId string

@secure()
@description('SECRET_KEY: signs the owner cookie.')
param secretKey string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    // Azure RBAC, not access policies: reading a secret takes a role assignment on the vault.
    enableRbacAuthorization: true
    // A deleted vault (and each deleted secret) can be recovered for 7 days, the shortest
    // retention, and nobody may purge it sooner: the name stays taken for those days after
    // `azd down` (docs/deploy.md).
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// Unversioned references (SecretUri without a version) follow rotation: App Service picks up a
// new version within 24 hours, or at once when the site's configuration changes (an
// `azd provision` writes it).
resource secretKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'secret-key'
  properties: {
    value: secretKey
    contentType: 'text/plain'
  }
}

// Key Vault Secrets User: read secret contents, nothing else.
var secretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, readerPrincipalId, secretsUserRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsUserRoleId)
    principalId: readerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource audit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
  }
}

output name string = vault.name
output secretKeyUri string = secretKeySecret.properties.secretUri
