// App Service on Linux for Python: the plan, the site, its app settings and its hardening.
//
// The free tier (F1) needs alwaysOn false and a 32-bit worker process (see the seed post);
// otherwise Azure answers: "Cannot update the site '<name>' because it uses x64 worker process
// which is not allowed in the target compute mode." F1 also has no VNet integration.

@description('Name of the App Service plan.')
param planName string

@description('Name of the site: https://<name>.azurewebsites.net.')
param siteName string

@description('Azure region.')
param location string

@description('Tags for both resources; the site also gets azd-service-name: web.')
param tags object = {}

@description('Plan SKU: F1 (free) or B1 and up.')
@allowed([
  'F1'
  'B1'
  'B2'
  'B3'
  'S1'
  'P0v3'
  'P1v3'
  'P2v3'
])
param sku string

@description('Number of instances (F1: 1).')
@minValue(1)
param instanceCount int = 1

@description('Python version of the runtime (Brook needs 3.11 or later).')
param pythonVersion string

@description('Resource id of the user-assigned identity the app runs as (AZURE_CLIENT_ID).')
param identityId string

@description('Resource id of the PostgreSQL administrator identity, which the start-up command\'s `brook db setup` signs in as; empty: the site does not hold it.')
param databaseAdminIdentityId string = ''

@description('The start-up command (main.bicep builds it): `brook db setup` when asked, `brook db upgrade`, `brook serve`.')
param startupCommand string

@description('Log Analytics workspace that receives the site\'s console, HTTP and platform logs.')
param logAnalyticsWorkspaceId string

@description('Subnet delegated to Microsoft.Web/serverFarms for VNet integration; empty for none.')
param virtualNetworkSubnetId string = ''

@description('The app settings (tests/test_infra.py holds the contract). None holds a secret: those are Key Vault references, resolved with the identity of identityId.')
param appSettings object

var freeTier = (sku == 'F1')

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'linux'
  sku: {
    name: sku
    capacity: instanceCount
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: siteName
  location: location
  tags: union(tags, {
    'azd-service-name': 'web'
  })
  kind: 'app,linux'
  // Any code on the site may ask the managed identity endpoint for a token of any identity the
  // site holds: the administrator identity is here only while the start-up command needs it.
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: union({
      '${identityId}': {}
    }, empty(databaseAdminIdentityId) ? {} : {
      '${databaseAdminIdentityId}': {}
    })
  }
  properties: {
    serverFarmId: plan.id
    // Key Vault references in the app settings are resolved as the app's own identity, the one
    // with Key Vault Secrets User on the vault (not as the administrator identity).
    keyVaultReferenceIdentity: identityId
    httpsOnly: true
    // Any instance serves any stream (Redis), so no session affinity cookie.
    clientAffinityEnabled: false
    // Regional VNet integration (what the seed post's networkConfig child resource does).
    // Only private (RFC 1918) traffic goes into the VNet: the database's private address.
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    siteConfig: {
      linuxFxVersion: 'PYTHON|${pythonVersion}'
      // Set up and migrate the database, then gunicorn with gevent workers (gunicorn.conf.py).
      appCommandLine: startupCommand
      alwaysOn: !freeTier
      use32BitWorkerProcess: freeTier
      healthCheckPath: '/healthz'
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      remoteDebuggingEnabled: false
    }
  }
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: appSettings
}

resource logs 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'logs'
  properties: {
    applicationLogs: {
      fileSystem: {
        level: 'Warning'
      }
    }
    httpLogs: {
      fileSystem: {
        enabled: true
        retentionInDays: 3
        retentionInMb: 35
      }
    }
    detailedErrorMessages: {
      enabled: true
    }
    failedRequestsTracing: {
      enabled: true
    }
  }
  dependsOn: [
    settings
  ]
}

// The site's logs in Log Analytics, kept with the workspace's retention, where the file-system
// logs above last days. The categories a Linux Python site has: console output (stdout and
// stderr: gunicorn's and Brook's log lines), the front end's HTTP log, and the platform's
// container log (starts, restarts, the start-up command's failures). AppServiceAppLogs is left
// out: on Linux it carries Java SE and Tomcat only. Microsoft's App Service monitoring reference
// limits only AppServiceFileAuditLogs and AppServiceAntivirusScanAuditLogs to Premium plans, so
// these go on every SKU, F1 included
// (https://learn.microsoft.com/azure/app-service/monitor-app-service-reference#resource-logs).
resource siteDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'logs-to-log-analytics'
  scope: site
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'AppServiceConsoleLogs'
        enabled: true
      }
      {
        category: 'AppServiceHTTPLogs'
        enabled: true
      }
      {
        category: 'AppServicePlatformLogs'
        enabled: true
      }
    ]
  }
}

// No FTP and no basic-auth deployments: azd deploys with a Microsoft Entra token.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
  dependsOn: [
    ftpCredentials
  ]
}

output name string = site.name
output uri string = 'https://${site.properties.defaultHostName}'
