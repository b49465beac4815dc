#!/usr/bin/env node
// The example kafka-esm deployment. Every input comes from context (cdk.json holds example
// values; override with `-c key=value`), so synthesis never calls AWS.
import { App, Aspects } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { stackPropsFromContext } from '../lib/config';
import { KafkaEsmStack } from '../lib/kafka-esm-stack';

const app = new App();
new KafkaEsmStack(app, app.node.tryGetContext('stackName') ?? 'KafkaEsm', stackPropsFromContext(app));
Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
