#!/usr/bin/env node
// The example kafka-esm deployment. Every input comes from context (cdk.json holds example values;
// override with `-c key=value`, lists comma-separated), so synthesis never calls AWS.
import { App, Aspects, Duration } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { KafkaEsmStack, architectureFromName } from '../lib/kafka-esm-stack';

const app = new App();

function context(key: string): string | undefined {
  const value: unknown = app.node.tryGetContext(key);
  if (value === undefined || value === null || value === '') return undefined;
  return Array.isArray(value) ? value.join(',') : String(value);
}
function required(key: string): string {
  const value = context(key);
  if (value === undefined) throw new Error(`context value '${key}' is required (cdk.json or -c ${key}=...)`);
  return value;
}
function list(key: string): string[] {
  return (context(key) ?? '').split(',').map((s) => s.trim()).filter((s) => s.length > 0);
}
function number(key: string): number | undefined {
  const value = context(key);
  return value === undefined ? undefined : Number(value);
}

new KafkaEsmStack(app, context('stackName') ?? 'KafkaEsm', {
  env: { account: required('account'), region: required('region') },
  description: 'kafka-esm: self-hosted Kafka event source mapping for AWS Lambda',
  network: {
    vpcId: required('vpcId'),
    availabilityZones: list('availabilityZones'),
    subnetIds: list('subnetIds'),
    routeTableIds: list('routeTableIds'),
    securityGroupId: required('securityGroupId'),
  },
  kafkaEsm: {
    eventSourceArn: required('clusterArn'),
    functionArns: list('targetFunctionArns'),
    sourceAccessSecretArns: list('secretArns'),
    sourceAccessSecretKmsKeyArns: list('secretKmsKeyArns'),
    iamAuthentication: context('iamAuthentication') === 'true',
    maximumPollers: number('maximumPollers'),
    architecture: architectureFromName(context('architecture')),
    timeout: number('timeoutSeconds') === undefined ? undefined : Duration.seconds(number('timeoutSeconds')!),
    memorySize: number('memorySize'),
    logRetention: number('logRetentionDays'),
    logLevel: context('logLevel'),
    vpcEndpoints: context('vpcEndpoints') === 'true',
  },
});

Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
